//! The deployment files under `deploy/` cannot be run here (no container
//! runtime), so they are parsed and held to what the server actually is:
//! probe paths answer, ports match the settings, every `CIVID_*` variable is
//! a setting, the image runs as a non-root user, the admin listener stays
//! internal, the systemd unit is hardened. Also: an older node runs on a
//! database a newer one migrated (rolling upgrades).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use civid::config::Settings;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::harness::TestServer;

const IMAGE: &str = "registry.city.example/civid/civid:0.1.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(rel: &str) -> String {
    let p = deploy_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// YAML as JSON values, `<<` merge keys applied (compose uses them).
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::String(s.clone())),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => {
            let mut out = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("unexpected mapping key {other:?}"),
                };
                if key == "<<" {
                    let Value::Object(base) = to_json(v) else { panic!("<< merges a mapping") };
                    for (bk, bv) in base {
                        out.entry(bk).or_insert(bv);
                    }
                } else {
                    out.insert(key, to_json(v));
                }
            }
            Value::Object(out)
        }
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unresolved YAML node {y:?}"),
    }
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(!docs.is_empty(), "{rel} holds no document");
    docs.iter().map(to_json).collect()
}

/// Every Kubernetes manifest: (file, document).
fn k8s() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        for d in yaml_docs(&format!("k8s/{name}")) {
            out.push((name.clone(), d));
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|(_, d)| d["kind"] == kind).map(|(_, d)| d).collect()
}

fn one<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The settings' names, as `CIVID_<NAME>` would set them.
fn setting_names() -> BTreeSet<String> {
    let Value::Object(m) = serde_json::to_value(Settings::default()).expect("settings") else { panic!("object") };
    m.keys().cloned().collect()
}

/// Variables with the prefix that are not settings.
const NOT_SETTINGS: &[&str] = &["CIVID_LOG"];

fn assert_setting_var(var: &str, whence: &str) {
    if NOT_SETTINGS.contains(&var) {
        return;
    }
    let name = var.strip_prefix("CIVID_").unwrap_or_else(|| panic!("{whence}: {var} is not a CIVID_ variable"));
    assert!(
        setting_names().contains(&name.to_ascii_lowercase()),
        "{whence}: {var} names no setting (src/config.rs has {:?})",
        setting_names()
    );
}

/// Every `CIVID_…` word in a text.
fn civid_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("CIVID_") {
        let start = i + pos;
        let mut end = start + "CIVID_".len();
        while end < b.len() && (b[end].is_ascii_uppercase() || b[end].is_ascii_digit() || b[end] == b'_') {
            end += 1;
        }
        let word = text[start..end].trim_end_matches('_');
        if word.len() > "CIVID".len() && !text[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(word.to_string());
        }
        i = end;
    }
    out
}

/// Loads a settings file as `civid --config FILE` does, plus environment
/// values given as the manifests give them (parsed as figment parses
/// environment variables).
fn load_settings(toml: &str, env: &[(String, String)]) -> Settings {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("civid.toml");
    std::fs::write(&path, toml).expect("write");
    let file_only = Settings::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
    let mut fig = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(&path));
    for (k, v) in env {
        let name = k.strip_prefix("CIVID_").expect("prefix").to_ascii_lowercase();
        let Ok(value) = v.parse::<figment::value::Value>();
        fig = fig.merge(Serialized::default(&name, value));
    }
    let with_env: Settings = fig.extract().unwrap_or_else(|e| panic!("{env:?}: {e}"));
    assert_eq!(file_only.listen, with_env.listen);
    with_env
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The literal environment of a container (`valueFrom` ones get a URL-ish
/// stand-in so their names can still be checked).
fn container_env(c: &Value, whence: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = str_of(&e["name"]).to_string();
        if name.starts_with("CIVID_") {
            assert_setting_var(&name, whence);
            if NOT_SETTINGS.contains(&name.as_str()) {
                continue;
            }
            let value = match e.get("value") {
                Some(v) => v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                None => {
                    assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string(), "{whence}: {name} has no value");
                    "from-a-secret".to_string()
                }
            };
            out.push((name, value));
        }
    }
    out
}

#[test]
fn kubernetes_manifests_parse_and_hold_together() {
    let docs = k8s();
    for (file, d) in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{file}: apiVersion and kind");
        if d["kind"] != "Kustomization" {
            assert!(d["metadata"]["name"].is_string(), "{file}: metadata.name");
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Secret",
        "ConfigMap",
        "Job",
        "NetworkPolicy",
        "Namespace",
        "Kustomization",
    ] {
        assert!(!of_kind(&docs, kind).is_empty(), "deploy/k8s has a {kind}");
    }

    // The node settings load, and agree with the mounts and ports.
    let config = one(&docs, "ConfigMap", "civid-config");
    let toml = str_of(&config["data"]["civid.toml"]);
    let dep = one(&docs, "Deployment", "civid");
    let pod = &dep["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let settings = load_settings(toml, &container_env(c, "deployment.yaml"));
    assert!(settings.public_url.starts_with("https://"), "production issuer is https");
    assert!(!settings.trusted_proxies.is_empty(), "the ingress controller is a trusted proxy");
    assert!(!settings.migrate_on_start && !settings.apply_realms_on_start, "the Job migrates and applies realms");
    assert!(!settings.redis_url.is_empty(), "several nodes need Redis");

    let ports: BTreeMap<String, u64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_of(&p["name"]).to_string(), p["containerPort"].as_u64().expect("port")))
        .collect();
    assert_eq!(ports.get("http"), Some(&u64::from(settings.listen.port())), "http port is listen's");
    let admin_port = u64::from(port_of(&settings.admin_listen));
    assert_eq!(ports.get("admin"), Some(&admin_port));
    assert_ne!(admin_port, u64::from(settings.listen.port()));

    // Probes: /readyz for readiness, /healthz for liveness, on the public port.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe} on the public port");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().expect("grace") > settings.shutdown_grace_secs,
        "Kubernetes waits longer than civid's own grace period"
    );

    // Mounts: the settings file, the realm files (applied by the Job), the KEK.
    let mounts: BTreeMap<String, &Value> =
        c["volumeMounts"].as_array().expect("mounts").iter().map(|m| (str_of(&m["name"]).to_string(), m)).collect();
    let volumes: BTreeMap<String, &Value> =
        pod["volumes"].as_array().expect("volumes").iter().map(|v| (str_of(&v["name"]).to_string(), v)).collect();
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().map(str_of).collect();
    let cfg_path = args.iter().position(|a| *a == "--config").map(|i| args[i + 1]).expect("--config");
    assert_eq!(mounts["config"]["mountPath"], cfg_path);
    assert_eq!(volumes["config"]["configMap"]["name"], "civid-config");
    assert_eq!(mounts["realms"]["mountPath"], &*settings.realms_dir.to_string_lossy());
    assert_eq!(volumes["realms"]["configMap"]["name"], "civid-realms");
    let kek_dir = str_of(&mounts["kek"]["mountPath"]);
    let kek_secret = str_of(&volumes["kek"]["secret"]["secretName"]);
    assert_eq!(settings.kek_file, format!("{kek_dir}/kek"), "kek_file is the mounted Secret's key");
    let secret = one(&docs, "Secret", kek_secret);
    assert!(secret["stringData"]["kek"].is_string() || secret["data"]["kek"].is_string());
    assert!(args.contains(&"serve"));
    // Writable only where civid writes: the root file system is read-only.
    let writable = str_of(&mounts["data"]["mountPath"]);
    assert!(settings.outbox_dir.starts_with(writable) && settings.keys_dir.starts_with(writable));

    // Non-root, read-only root file system, nothing to escalate.
    for (name, spec) in [("Deployment", pod), ("Job", &one(&docs, "Job", "civid-migrate")["spec"]["template"]["spec"])]
    {
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(spec["securityContext"]["runAsUser"].as_u64().expect("uid") > 0, "{name}");
        assert_eq!(spec["automountServiceAccountToken"], false, "{name}");
        let all: Vec<&Value> = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["initContainers"].as_array().into_iter().flatten())
            .collect();
        for c in all {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
            assert_eq!(c["image"], IMAGE, "{name}: one image everywhere");
            container_env(c, name);
        }
    }

    // The migration Job: `civid migrate`, then the realm files.
    let job = &one(&docs, "Job", "civid-migrate")["spec"]["template"]["spec"];
    let job_args = |c: &Value| c["args"].as_array().expect("args").iter().map(str_of).collect::<Vec<_>>().join(" ");
    assert!(job_args(&job["initContainers"][0]).ends_with(" migrate"));
    assert!(job_args(&job["containers"][0]).contains(" realm apply /etc/civid/realms"));

    // The admin listener stays internal: not in the Service, not in the
    // Ingress; the NetworkPolicy lets the public port and the admin port in
    // from different places.
    for svc in of_kind(&docs, "Service") {
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            assert_ne!(p["targetPort"], "admin");
            assert_ne!(p["targetPort"].as_u64(), Some(admin_port));
            assert_ne!(p["port"].as_u64(), Some(admin_port));
        }
        assert_eq!(svc["spec"]["type"], "ClusterIP");
    }
    let ingress = one(&docs, "Ingress", "civid");
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"], "http");
    let policy = one(&docs, "NetworkPolicy", "civid");
    for rule in policy["spec"]["ingress"].as_array().expect("rules") {
        let ports: Vec<u64> =
            rule["ports"].as_array().expect("ports").iter().filter_map(|p| p["port"].as_u64()).collect();
        assert!(!(ports.contains(&admin_port) && ports.contains(&u64::from(settings.listen.port()))));
    }

    // Scaling and disruption.
    let hpa = one(&docs, "HorizontalPodAutoscaler", "civid");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "civid");
    assert!(hpa["spec"]["minReplicas"].as_u64().expect("min") >= 2);
    assert!(dep["spec"].get("replicas").is_none(), "the HPA owns the replica count");
    let pdb = one(&docs, "PodDisruptionBudget", "civid");
    assert_eq!(pdb["spec"]["selector"], dep["spec"]["selector"]);
    assert_eq!(dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"]);

    // Kustomize lists every manifest except those applied by hand.
    let kust = of_kind(&docs, "Kustomization")[0];
    let listed: BTreeSet<&str> = kust["resources"].as_array().expect("resources").iter().map(str_of).collect();
    let files: BTreeSet<&str> = docs.iter().map(|(f, _)| f.as_str()).collect();
    for f in &files {
        let by_hand = ["kustomization.yaml", "secret.yaml", "migrate-job.yaml"].contains(f);
        assert_eq!(listed.contains(f), !by_hand, "{f} in kustomization.yaml");
    }
    assert!(listed.iter().all(|f| files.contains(f)));
    assert_eq!(format!("{}:{}", str_of(&kust["images"][0]["name"]), str_of(&kust["images"][0]["newTag"])), IMAGE);
    for (file, d) in &docs {
        if d["kind"] != "Namespace" && d["kind"] != "Kustomization" {
            assert_eq!(d["metadata"]["namespace"], "civid", "{file}");
        }
    }
}

#[test]
fn the_realm_files_of_the_configmap_are_valid_realms() {
    let docs = k8s();
    let realms = one(&docs, "ConfigMap", "civid-realms");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = realms["data"].as_object().expect("data");
    assert!(data.contains_key("admin.toml"), "the admin realm is there");
    for (name, text) in data {
        std::fs::write(dir.path().join(name), str_of(text)).expect("write");
    }
    let decls = civid::realm::file::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decls.len(), data.len());
}

#[test]
fn compose_runs_two_nodes_behind_nginx() {
    let doc = yaml_docs("compose.yaml").remove(0);
    let services = doc["services"].as_object().expect("services");
    for s in ["postgres", "redis", "nginx", "civid-init", "civid1", "civid2"] {
        assert!(services.contains_key(s), "compose has {s}");
    }
    let settings = load_settings(&read("civid.toml"), &[]);
    assert!(settings.public_url.starts_with("https://"));
    assert!(!settings.migrate_on_start && !settings.apply_realms_on_start);
    let admin = settings.admin_listen.as_str();
    assert!(admin.is_empty() || admin.starts_with("127.0.0.1:"), "admin listener stays in the container");

    let nginx_ip = str_of(&services["nginx"]["networks"]["front"]["ipv4_address"]);
    let nginx_ip: std::net::IpAddr = nginx_ip.parse().expect("ip");
    assert!(settings.trusted_proxies.iter().any(|c| c.contains(nginx_ip)), "nginx is trusted");
    let subnet = str_of(&doc["networks"]["front"]["ipam"]["config"][0]["subnet"]);
    assert!(subnet.parse::<civid::proxy::Cidr>().expect("subnet").contains(nginx_ip));

    let mut nodes = 0;
    for (name, s) in services {
        // Only nginx publishes ports.
        assert_eq!(s.get("ports").is_some(), name == "nginx", "{name}: ports");
        if name.starts_with("civid") {
            assert_eq!(s["image"], IMAGE, "{name}");
            assert_eq!(s["user"], "10001:10001", "{name}");
            assert_eq!(s["read_only"], true, "{name}");
            let cmd: Vec<&str> = s["command"].as_array().expect("command").iter().map(str_of).collect();
            assert_eq!(&cmd[..2], &["--config", "/etc/civid/civid.toml"], "{name}");
            let env: Vec<(String, String)> = s["environment"]
                .as_object()
                .expect("environment")
                .iter()
                .map(|(k, v)| (k.clone(), str_of(v).to_string()))
                .collect();
            for (k, _) in &env {
                assert_setting_var(k, &format!("compose {name}"));
            }
            let vols: Vec<&str> = s["volumes"].as_array().expect("volumes").iter().map(str_of).collect();
            assert!(vols.contains(&"./civid.toml:/etc/civid/civid.toml:ro"), "{name}");
            assert!(vols.iter().any(|v| v.ends_with(&format!(":{}:ro", settings.realms_dir.display()))), "{name}");
            assert_eq!(settings.kek_file, str_of(&s["secrets"][0]["target"]), "{name}: kek_file is the mounted secret");
            if cmd.contains(&"serve") {
                nodes += 1;
                assert!(vols.iter().any(|v| v.ends_with(":/var/lib/civid")), "{name}: a writable data volume");
                assert!(str_of(&s["healthcheck"]["test"][3]).contains("/readyz"), "{name}");
                assert_eq!(s["depends_on"]["civid-init"]["condition"], "service_completed_successfully");
            }
        }
    }
    assert_eq!(nodes, 2, "two civid nodes");
    let redis: Vec<&str> = services["redis"]["command"].as_array().expect("command").iter().map(str_of).collect();
    assert!(redis.windows(2).any(|w| w == ["--appendonly", "no"]), "Redis holds nothing durable");

    // nginx: TLS, both nodes upstream, the client's address appended.
    let conf = read("nginx.conf");
    for needle in [
        "server civid1:8080",
        "server civid2:8080",
        "listen 443 ssl",
        "ssl_certificate ",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_pass http://civid",
    ] {
        assert!(conf.contains(needle), "nginx.conf: {needle}");
    }
    assert!(!conf.contains(":8081"), "nginx never forwards to the admin listener");
    assert_eq!(conf.matches('{').count(), conf.matches('}').count(), "nginx.conf braces balance");
}

#[test]
fn the_container_image_runs_as_a_non_root_user() {
    let text = read("Containerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let froms: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert!(froms.len() >= 2, "multi-stage");
    let runtime = &lines[froms[froms.len() - 1]..];
    let users: Vec<&str> = runtime.iter().filter_map(|l| l.strip_prefix("USER ")).collect();
    let user = users.last().expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(!["root", "0", ""].contains(&uid), "USER {user} is not root");
    assert!(runtime.iter().any(|l| l.starts_with("ENTRYPOINT") && l.contains("civid")));
    assert!(runtime.iter().any(|l| l.starts_with("EXPOSE 8080")));
    assert!(!runtime.iter().any(|l| l.starts_with("EXPOSE") && l.contains("8081")), "the admin port is not exposed");
    // Realm files, settings and keys are mounted, never baked in.
    for l in runtime.iter().filter(|l| l.starts_with("COPY") || l.starts_with("ADD")) {
        assert!(l.contains("--from="), "the runtime stage copies only the built binary: {l}");
        assert!(!l.contains("config") && !l.contains("keys"), "{l}");
    }
    for w in civid_words(&text) {
        assert_setting_var(&w, "Containerfile");
    }
    let ignore = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore")).expect("ignore");
    for must in ["target", "keys", "data"] {
        assert!(ignore.lines().any(|l| l.trim() == must), ".dockerignore leaves out {must}");
    }
}

#[test]
fn the_systemd_unit_is_hardened() {
    let text = read("civid.service");
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!current.is_empty(), "{line} outside a section");
        sections.entry(current.clone()).or_default().push((k.to_string(), v.to_string()));
    }
    assert_eq!(sections.keys().cloned().collect::<Vec<_>>(), ["Install", "Service", "Unit"]);
    let service = &sections["Service"];
    let get = |k: &str| service.iter().filter(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallArchitectures", "native"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(get(k), [v], "{k}");
    }
    assert!(get("SystemCallFilter").contains(&"@system-service"));
    assert!(get("DynamicUser") == ["yes"] || get("User").iter().any(|u| *u != "root" && !u.is_empty()));
    assert!(get("LimitNOFILE")[0].parse::<u64>().expect("LimitNOFILE") >= 65536);
    assert_eq!(get("ReadWritePaths"), ["/var/lib/civid"]);
    let exec = get("ExecStart");
    assert!(exec.len() == 1 && exec[0].starts_with("/usr/local/bin/civid ") && exec[0].ends_with(" serve"));
    let stop: u64 = get("TimeoutStopSec")[0].trim_end_matches('s').parse().expect("seconds");
    assert!(stop > Settings::default().shutdown_grace_secs, "systemd waits longer than civid's grace period");
    for e in get("Environment") {
        let (k, _) = e.split_once('=').expect("NAME=value");
        assert_setting_var(k, "civid.service");
    }
    assert_eq!(get("Environment"), ["CIVID_KEK_FILE=%d/kek"]);
    assert!(get("LoadCredential").iter().any(|c| c.starts_with("kek:")), "the KEK arrives as a credential");
}

#[test]
fn every_civid_variable_the_deployment_and_its_docs_name_is_a_setting() {
    let mut texts = vec![];
    for rel in ["compose.yaml", "civid.toml", "nginx.conf", "civid.service", "Containerfile"] {
        texts.push((rel.to_string(), read(rel)));
    }
    for f in k8s().into_iter().map(|(f, _)| f).collect::<BTreeSet<_>>() {
        texts.push((format!("k8s/{f}"), read(&format!("k8s/{f}"))));
    }
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/OPERATIONS.md");
    texts.push(("docs/OPERATIONS.md".into(), std::fs::read_to_string(ops).expect("docs/OPERATIONS.md")));
    for (whence, text) in &texts {
        for w in civid_words(text) {
            assert_setting_var(&w, whence);
        }
    }
}

#[tokio::test]
async fn the_probe_paths_answer_on_the_public_listener_only() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let r = client.get(format!("{}{path}", server.url)).send().await.expect("probe");
        assert_eq!(r.status(), 200, "{path}");
    }
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.expect("metrics");
    assert_eq!(metrics.status(), 404, "/metrics is not public");
    let metrics = client.get(format!("{}/metrics", server.admin_url)).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200, "/metrics is on the admin listener");
    server.stop().await;
}

/// During a rolling upgrade the new version migrates while old nodes still
/// run and restart: an old binary must start on the newer schema.
#[tokio::test]
async fn an_older_node_runs_on_a_database_a_newer_one_migrated() {
    let server = TestServer::start().await;
    let db = &server.state.db;
    civid::store::migrate(db).await.expect("up to date");
    db.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29991231_000001_from_the_future', 0)",
    )
    .await
    .expect("a newer migration");
    civid::store::migrate(db).await.expect("an older node accepts a newer schema");
    // A database that lacks one of this binary's migrations as well has
    // diverged: refused.
    db.execute_unprepared("DELETE FROM seaql_migrations WHERE version = 'm20261126_000005_acting'")
        .await
        .expect("forget one");
    let err = civid::store::migrate(db).await.expect_err("diverged");
    assert!(err.to_string().contains("m29991231_000001_from_the_future"), "{err}");
    server.stop().await;
}
