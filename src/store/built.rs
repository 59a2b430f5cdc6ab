//! SQL built once. sea-query renders a statement anew on every call, and
//! for the statements of every sign-in that rendering cost more CPU than
//! SQLite's own work on them (docs/PERFORMANCE.md, "Password sign-in").
//! A [`Built`] renders its statement once per backend, with sentinel
//! values in place of the arguments, and afterwards only binds: the SQL
//! text is reused and the arguments take the sentinels' places.
use std::sync::OnceLock;

use sea_orm::{DbBackend, Statement, Value};

/// Where a bind value of the rendered statement comes from.
#[derive(Clone)]
enum Slot {
    /// The caller's argument of this index.
    Arg(usize),
    /// A value of the statement itself (a constant in the query).
    Fixed(Value),
}

struct Rendered {
    sql: String,
    slots: Vec<Slot>,
}

/// A statement rendered once per backend. The builder takes the string
/// arguments and returns the statement for a backend; it must not branch
/// on the arguments' values (the arguments it gets on the first call are
/// sentinels).
pub struct Built<const N: usize> {
    postgres: OnceLock<Option<Rendered>>,
    sqlite: OnceLock<Option<Rendered>>,
    build: fn(DbBackend, [&str; N]) -> Statement,
}

impl<const N: usize> Built<N> {
    pub const fn new(build: fn(DbBackend, [&str; N]) -> Statement) -> Built<N> {
        Built { postgres: OnceLock::new(), sqlite: OnceLock::new(), build }
    }

    /// The statement for `backend` with `args` bound.
    pub fn bind(&self, backend: DbBackend, args: [&str; N]) -> Statement {
        let cell = match backend {
            DbBackend::Sqlite => &self.sqlite,
            _ => &self.postgres,
        };
        match cell.get_or_init(|| self.render(backend)) {
            Some(r) => {
                let values = r
                    .slots
                    .iter()
                    .map(|s| match s {
                        Slot::Arg(i) => Value::from(args.get(*i).copied().unwrap_or_default()),
                        Slot::Fixed(v) => v.clone(),
                    })
                    .collect::<Vec<_>>();
                Statement::from_sql_and_values(backend, r.sql.clone(), values)
            }
            // The sentinels did not come through as bind values (a
            // builder that inlines them): render every time.
            None => (self.build)(backend, args),
        }
    }

    fn render(&self, backend: DbBackend) -> Option<Rendered> {
        let sentinels: Vec<String> = (0..N).map(|i| format!("\u{1}civid-argument-{i}\u{1}")).collect();
        let mut args = [""; N];
        for (a, s) in args.iter_mut().zip(&sentinels) {
            *a = s.as_str();
        }
        let stmt = (self.build)(backend, args);
        let values = stmt.values.map(|v| v.0).unwrap_or_default();
        let mut seen = [false; N];
        let slots = values
            .into_iter()
            .map(|v| match &v {
                Value::String(Some(s)) => match sentinels.iter().position(|x| x == s) {
                    Some(i) => {
                        seen[i] = true;
                        Slot::Arg(i)
                    }
                    None => Slot::Fixed(v),
                },
                _ => Slot::Fixed(v),
            })
            .collect();
        // Every argument must be a bind value, and no sentinel may be
        // left in the SQL text itself.
        let inlined = sentinels.iter().any(|s| stmt.sql.contains(s.as_str()));
        (seen.iter().all(|s| *s) && !inlined).then_some(Rendered { sql: stmt.sql, slots })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    use sea_orm::{DbBackend, Statement, Value};

    use super::Built;

    fn two_with_a_constant(backend: DbBackend, [a, b]: [&str; 2]) -> Statement {
        let q = Query::select()
            .expr(Expr::val(1))
            .from("t")
            .and_where(Expr::col("x").eq(a))
            .and_where(Expr::col("k").eq("constant"))
            .and_where(Expr::col("y").eq(b))
            .and_where(Expr::col("z").eq(a))
            .to_owned();
        backend.build(&q)
    }

    fn inlined(backend: DbBackend, [a]: [&str; 1]) -> Statement {
        Statement::from_string(backend, format!("SELECT '{a}'"))
    }

    #[test]
    fn binds_the_arguments_where_the_builder_put_them() {
        static B: Built<2> = Built::new(two_with_a_constant);
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for (a, b) in [("r1", "u1"), ("r2", "u2")] {
                let got = B.bind(backend, [a, b]);
                let want = two_with_a_constant(backend, [a, b]);
                assert_eq!(got.sql, want.sql);
                assert_eq!(got.values, want.values);
                assert_eq!(
                    got.values.map(|v| v.0),
                    Some(vec![Value::from(1), Value::from(a), Value::from("constant"), Value::from(b), Value::from(a)])
                );
            }
        }
    }

    #[test]
    fn a_builder_that_inlines_its_arguments_is_rendered_every_time() {
        static B: Built<1> = Built::new(inlined);
        assert_eq!(B.bind(DbBackend::Sqlite, ["one"]).sql, "SELECT 'one'");
        assert_eq!(B.bind(DbBackend::Sqlite, ["two"]).sql, "SELECT 'two'");
    }
}
