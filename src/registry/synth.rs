//! `civid registry synth`: a realistic synthetic registry file for tests and
//! benchmarks — valid numbers (no two alike), common Chinese names, about
//! 0.5% deceased persons, some revoked or cancelled enterprises. Written as
//! it is generated, so any count fits in flat memory; the same seed gives the
//! same file.
use std::io::Write;

use chrono::NaiveDate;

use super::Kind;
use crate::identity::id_number::COUNTY_CODES;
use crate::identity::{ResidentId, Uscc};

/// SplitMix64: small, fast, deterministic; not for secrets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Common surnames, most common first (picked with a skew toward the front).
const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林",
    "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "于",
    "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆",
    "汪", "范", "金", "石", "廖", "贾", "夏", "韦", "付", "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛",
    "闫", "段", "雷", "侯", "龙", "史", "陶", "黎", "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "欧阳",
    "司马", "诸葛",
];

const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞",
    "平", "刚", "桂", "英", "华", "玉", "萍", "红", "建", "文", "辉", "力", "国", "荣", "鹏", "春", "梅", "琳", "丹",
    "雪", "飞", "峰", "斌", "宇", "浩", "凯", "俊", "婷", "欣", "怡", "佳", "子", "涵", "轩", "梓", "睿", "晨", "博",
    "一", "诺", "宁", "思", "雨", "嘉", "晓", "志", "海", "云", "亮", "慧", "颖", "琴", "彬", "健", "波", "瑶", "悦",
    "昊", "然", "泽", "天", "家", "乐", "安", "心", "语", "彤", "可", "馨", "铭", "晗", "宏", "新", "东", "兰", "凤",
    "德", "成", "永", "金", "兵", "斌", "林", "清", "岩", "宸", "逸", "若", "沐", "熙",
];

const CITIES: &[&str] =
    &["北京", "上海", "广州", "深圳", "杭州", "南京", "青岛", "济南", "成都", "武汉", "西安", "重庆", "天津", "长沙"];
const TRADE_NAMES: &[&str] = &[
    "华信", "鼎盛", "恒通", "瑞丰", "远航", "正泰", "博远", "嘉和", "新元", "同创", "海纳", "宏图", "众诚", "金桥",
    "康达", "明德", "天成", "汇智", "中联", "安泰", "云帆", "启明", "盛世", "德润",
];
const INDUSTRIES: &[&str] = &[
    "科技",
    "贸易",
    "餐饮管理",
    "物业服务",
    "建筑工程",
    "网络技术",
    "文化传媒",
    "医药",
    "物流",
    "咨询服务",
    "电子",
    "食品",
    "教育科技",
    "环保科技",
];

/// A plausible Chinese name: a common surname and one or two given characters.
pub fn name(rng: &mut Rng) -> String {
    let u = rng.unit();
    let surname = SURNAMES[((u * u) * SURNAMES.len() as f64) as usize % SURNAMES.len()];
    let mut s = surname.to_string();
    s.push_str(GIVEN[rng.below(GIVEN.len() as u64) as usize]);
    if rng.unit() < 0.7 {
        s.push_str(GIVEN[rng.below(GIVEN.len() as u64) as usize]);
    }
    s
}

fn date(first: NaiveDate, days: u64) -> NaiveDate {
    first + chrono::Days::new(days)
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A permutation of `0..m` (an affine map with a multiplier coprime to `m`),
/// so the i-th generated number differs from every other.
struct Permutation {
    m: u128,
    a: u128,
    b: u128,
}

impl Permutation {
    fn new(m: u64, rng: &mut Rng) -> Permutation {
        let m = u128::from(m.max(1));
        let mut a = (u128::from(rng.next_u64()) % m) | 1;
        while gcd(a, m) != 1 {
            a = (a + 2) % m;
        }
        Permutation { m, a, b: u128::from(rng.next_u64()) % m }
    }

    fn at(&self, i: u64) -> u64 {
        ((u128::from(i) * self.a + self.b) % self.m) as u64
    }
}

const PERSON_DAYS_FROM: (i32, u32, u32) = (1930, 1, 1);
const PERSON_DAYS: u64 = 34_699; // to 2024-12-31

/// Writes `count` synthetic rows of `kind` as CSV (header first).
pub fn write(kind: Kind, count: u64, seed: u64, out: impl Write) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mut w = csv::WriterBuilder::new().from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
    let err = |e: csv::Error| format!("writing: {e}");
    let first =
        NaiveDate::from_ymd_opt(PERSON_DAYS_FROM.0, PERSON_DAYS_FROM.1, PERSON_DAYS_FROM.2).ok_or("bad start date")?;
    let regions = COUNTY_CODES.len() as u64;
    match kind {
        Kind::Person => {
            let space = regions * PERSON_DAYS * 1000;
            if count > space {
                return Err(format!("at most {space} distinct persons can be generated"));
            }
            let perm = Permutation::new(space, &mut rng);
            w.write_record(["id_number", "name", "status"]).map_err(err)?;
            for i in 0..count {
                let mut k = perm.at(i);
                let region = COUNTY_CODES[(k % regions) as usize];
                k /= regions;
                let seq = (k % 1000) as u16;
                let day = k / 1000;
                let id = ResidentId::generate(region, date(first, day), seq).map_err(|e| e.to_string())?;
                let status = if rng.unit() < 0.005 { "deceased" } else { "alive" };
                w.write_record([id.as_str(), &name(&mut rng), status]).map_err(err)?;
            }
        }
        Kind::Enterprise => {
            let space = regions * 100_000_000;
            if count > space {
                return Err(format!("at most {space} distinct enterprises can be generated"));
            }
            let perm = Permutation::new(space, &mut rng);
            w.write_record(["uscc", "name", "legal_rep_id_number", "legal_rep_name", "status"]).map_err(err)?;
            for i in 0..count {
                let k = perm.at(i);
                let region = COUNTY_CODES[(k % regions) as usize];
                let org = format!("{:08}", k / regions);
                let uscc = Uscc::generate("91", region, &org).map_err(|e| e.to_string())?;
                let name = format!(
                    "{}{}{}有限公司",
                    CITIES[rng.below(CITIES.len() as u64) as usize],
                    TRADE_NAMES[rng.below(TRADE_NAMES.len() as u64) as usize],
                    INDUSTRIES[rng.below(INDUSTRIES.len() as u64) as usize]
                );
                let rep = ResidentId::generate(
                    COUNTY_CODES[rng.below(regions) as usize],
                    date(first, 7_300 + rng.below(18_000)),
                    rng.below(1000) as u16,
                )
                .map_err(|e| e.to_string())?;
                let u = rng.unit();
                let status = if u < 0.03 {
                    "revoked"
                } else if u < 0.07 {
                    "cancelled"
                } else {
                    "active"
                };
                w.write_record([uscc.as_str(), &name, rep.as_str(), &self::name(&mut rng), status]).map_err(err)?;
            }
        }
    }
    w.flush().map_err(|e| format!("writing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ResidentId;

    #[test]
    fn persons_are_valid_distinct_and_deterministic() {
        let mut a = Vec::new();
        write(Kind::Person, 5_000, 7, &mut a).unwrap();
        let mut b = Vec::new();
        write(Kind::Person, 5_000, 7, &mut b).unwrap();
        assert_eq!(a, b, "same seed, same file");
        let text = String::from_utf8(a).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut deceased = 0;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(ResidentId::parse(f[0], today).is_ok(), "{line}");
            assert!(ids.insert(f[0].to_string()), "duplicate {line}");
            assert!((2..=4).contains(&f[1].chars().count()), "{line}");
            deceased += usize::from(f[2] == "deceased");
        }
        assert_eq!(ids.len(), 5_000);
        assert!((5..=60).contains(&deceased), "about 0.5% deceased: {deceased}");
    }

    #[test]
    fn enterprises_are_valid() {
        let mut a = Vec::new();
        write(Kind::Enterprise, 500, 1, &mut a).unwrap();
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with("uscc,name,legal_rep_id_number,legal_rep_name,status\n"));
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(Uscc::parse(f[0]).is_ok(), "{line}");
            assert!(ResidentId::parse(f[2], today).is_ok(), "{line}");
            assert!(["active", "revoked", "cancelled"].contains(&f[4]), "{line}");
        }
    }
}
