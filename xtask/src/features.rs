//! SQL that only newer PostgreSQL majors understand, recognised in a statement a server refused,
//! so the error can say which major it needs instead of leaving a bare syntax error.

/// A feature, the first major that has it, and how to spot it in upper-cased SQL.
struct Feature {
    needs: u32,
    what: &'static str,
    found: fn(&str) -> bool,
}

const FEATURES: &[Feature] = &[
    Feature {
        needs: 18,
        what: "virtual generated columns (GENERATED ALWAYS AS (...) VIRTUAL, or without STORED)",
        found: virtual_generated_column,
    },
    Feature { needs: 18, what: "uuidv7()", found: |sql| sql.contains("UUIDV7(") },
    Feature {
        needs: 18,
        what: "temporal keys (WITHOUT OVERLAPS, PERIOD)",
        found: |sql| sql.contains("WITHOUT OVERLAPS"),
    },
    Feature { needs: 18, what: "NOT ENFORCED constraints", found: |sql| sql.contains("NOT ENFORCED") },
    Feature { needs: 17, what: "the MAINTAIN privilege", found: grants_maintain },
    Feature { needs: 17, what: "JSON_TABLE", found: |sql| sql.contains("JSON_TABLE") },
    Feature { needs: 16, what: "SYSTEM_USER", found: |sql| words(sql).any(|w| w == "SYSTEM_USER") },
    Feature { needs: 15, what: "UNIQUE NULLS NOT DISTINCT", found: |sql| sql.contains("NULLS NOT DISTINCT") },
    Feature { needs: 15, what: "MERGE", found: |sql| words(sql).next() == Some("MERGE") },
];

/// What `sql` uses that a server of `major` lacks, as a sentence for an error message.
pub fn newer_than(major: u32, sql: &str) -> Option<String> {
    let upper = without_comments(sql).to_uppercase();
    let missing: Vec<&Feature> = FEATURES.iter().filter(|f| f.needs > major && (f.found)(&upper)).collect();
    let first = missing.first()?;
    let needs = missing.iter().map(|f| f.needs).max().unwrap_or(first.needs);
    let what: Vec<&str> = missing.iter().map(|f| f.what).collect();
    Some(format!(
        "this uses {}, which PostgreSQL {major} (the server's major) does not have: it needs PostgreSQL {needs}. \
         Pin the major production runs (`postgres = \"{needs}\"` in [workspace.metadata.xtask]), or write it \
         for {major}",
        what.join(" and ")
    ))
}

fn words(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

fn without_comments(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GENERATED ALWAYS AS (expression)` not followed by STORED (an identity has no parenthesis).
fn virtual_generated_column(sql: &str) -> bool {
    let mut rest = sql;
    while let Some(at) = rest.find("GENERATED ALWAYS AS") {
        rest = rest[at + "GENERATED ALWAYS AS".len()..].trim_start();
        let Some(inner) = rest.strip_prefix('(') else { continue };
        let mut depth = 1;
        let end = inner.char_indices().find_map(|(i, c)| {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            (depth == 0).then_some(i)
        });
        let Some(end) = end else { return false };
        rest = &inner[end + 1..];
        if words(rest).next() != Some("STORED") {
            return true;
        }
    }
    false
}

/// A GRANT or REVOKE naming MAINTAIN among its privileges (before ON).
fn grants_maintain(sql: &str) -> bool {
    sql.split(';').any(|statement| {
        let mut words = words(statement);
        matches!(words.next(), Some("GRANT" | "REVOKE"))
            && words.take_while(|w| *w != "ON").any(|w| w == "MAINTAIN")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_sql_is_named_with_the_major_it_needs() {
        let virtual_column = "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * (a + 1)) VIRTUAL);";
        let hint = newer_than(16, virtual_column).unwrap();
        assert!(hint.contains("virtual generated columns") && hint.contains("needs PostgreSQL 18"), "{hint}");
        assert!(newer_than(16, "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * 2));").is_some());
        assert_eq!(newer_than(18, virtual_column), None);
        for fine in [
            "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * (a + 1)) STORED);",
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY);",
            "CREATE TABLE maintain (merge int); -- GENERATED ALWAYS AS (1) VIRTUAL",
            "GRANT SELECT ON maintain TO app;",
        ] {
            assert_eq!(newer_than(14, fine), None, "{fine}");
        }
        let hint = newer_than(16, "GRANT SELECT, MAINTAIN ON t TO app;").unwrap();
        assert!(hint.contains("MAINTAIN privilege") && hint.contains("needs PostgreSQL 17"), "{hint}");
        let both =
            newer_than(14, "MERGE INTO t USING s ON true WHEN MATCHED THEN DO NOTHING; SELECT uuidv7();");
        assert!(both.unwrap().contains("uuidv7() and MERGE, which PostgreSQL 14"));
    }
}
