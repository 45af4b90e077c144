//! The configuration from the environment: `SENTINEL__SECTION__KEY=value` overrides a key of the file, and a secret
//! named by `*_env` may come from a file (`NAME_FILE`, Docker's convention, or `$CREDENTIALS_DIRECTORY/NAME`,
//! systemd's `LoadCredential=`), so that no secret has to sit in the environment itself.

use std::path::Path;

use toml::{Table, Value};

/// The prefix of an override; segments are separated by `__`.
pub const PREFIX: &str = "SENTINEL__";

/// One override to apply: `SENTINEL__SYMBOLS__BTCUSDT__MAX_LEVERAGE` -> `["symbols", "btcusdt", "max_leverage"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The variable's name, for messages.
    pub variable: String,
    pub path: Vec<String>,
    pub value: String,
}

/// The overrides among `vars` (the process environment, or a test's), in name order so the result does not depend
/// on the environment's order.
pub fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter_map(|(variable, value)| {
            let rest = variable.strip_prefix(PREFIX)?;
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return None;
            }
            Some(Override {
                path,
                value,
                variable,
            })
        })
        .collect();
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found
}

/// Applies `overrides` to the parsed file; returns the key path each one set (`symbols[0].max_leverage`), or why
/// one cannot apply.
///
/// - `section.key` sets a key of a table (`[server] listen`), creating the table if the file has none;
/// - in an array of tables (`[[symbols]]`, `[[sources]]`) the second segment picks the entry: its `symbol` or
///   `name` (any case), or its index; `SENTINEL__SYMBOLS__BTCUSDT__MAX_LEVERAGE=10`;
/// - a value is typed like the key it replaces (a string stays a string, so `"0.0004"` stays exact); a new key
///   takes `true`/`false` as a boolean, a whole number as an integer, `[...]` as an array, anything else as text.
pub fn apply(file: &mut Table, overrides: &[Override]) -> Result<Vec<String>, String> {
    let mut applied = Vec::with_capacity(overrides.len());
    for o in overrides {
        let at = set(file, &o.path, &o.value).map_err(|why| format!("{}: {why}", o.variable))?;
        applied.push(at);
    }
    Ok(applied)
}

fn set(table: &mut Table, path: &[String], raw: &str) -> Result<String, String> {
    let (key, rest) = path
        .split_first()
        .ok_or_else(|| "names no key".to_string())?;
    if rest.is_empty() {
        let value = typed(raw, table.get(key.as_str()))?;
        table.insert(key.clone(), value);
        return Ok(key.clone());
    }
    let entry = table
        .entry(key.clone())
        .or_insert_with(|| Value::Table(Table::new()));
    match entry {
        Value::Table(inner) => set(inner, rest, raw).map(|at| format!("{key}.{at}")),
        Value::Array(items) => {
            let (pick, rest) = rest
                .split_first()
                .ok_or_else(|| format!("`{key}` is a list: name an entry"))?;
            if rest.is_empty() {
                return Err(format!("`{key}.{pick}` names an entry, not a key of it"));
            }
            let index = find(items, pick).ok_or_else(|| {
                format!("`{key}` has no entry `{pick}` (by name, symbol or index)")
            })?;
            match &mut items[index] {
                Value::Table(inner) => {
                    set(inner, rest, raw).map(|at| format!("{key}[{index}].{at}"))
                }
                _ => Err(format!("`{key}[{index}]` is not a table")),
            }
        }
        _ => Err(format!("`{key}` is a value, not a table")),
    }
}

/// The entry of an array of tables named `pick`: by its `symbol` or `name`, or by index.
fn find(items: &[Value], pick: &str) -> Option<usize> {
    let named = items.iter().position(|item| {
        ["symbol", "name"].iter().any(|field| {
            item.get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(pick))
        })
    });
    named.or_else(|| pick.parse::<usize>().ok().filter(|i| *i < items.len()))
}

/// `raw` as the type of the value it replaces, or by its look for a new key.
fn typed(raw: &str, replaces: Option<&Value>) -> Result<Value, String> {
    let parse = |what: &str| -> Result<Value, String> {
        let doc: Table =
            toml::from_str(&format!("v = {raw}")).map_err(|_| format!("`{raw}` is not {what}"))?;
        doc.get("v")
            .cloned()
            .ok_or_else(|| format!("`{raw}` is not {what}"))
    };
    match replaces {
        Some(Value::String(_)) => Ok(Value::String(raw.to_string())),
        Some(Value::Integer(_)) => parse("a whole number"),
        Some(Value::Boolean(_)) => parse("true or false"),
        Some(Value::Array(_)) => parse("a list like [\"a\", \"b\"]"),
        Some(Value::Float(_)) => parse("a number"),
        Some(_) => Err("replaces a table or a date: set its keys one by one".into()),
        None => {
            let trimmed = raw.trim();
            if trimmed == "true" || trimmed == "false" || trimmed.starts_with('[') {
                return parse("a value");
            }
            if let Ok(n) = trimmed.parse::<i64>() {
                return Ok(Value::Integer(n));
            }
            Ok(Value::String(raw.to_string()))
        }
    }
}

/// Looks a secret's variable up: the variable itself, else the file named by `NAME_FILE`, else
/// `$CREDENTIALS_DIRECTORY/NAME`. A file's content loses one trailing line break.
pub fn secret_lookup(name: &str, var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(value) = var(name) {
        return Some(value);
    }
    let from_file = var(&format!("{name}_FILE"))
        .map(std::path::PathBuf::from)
        .or_else(|| {
            var("CREDENTIALS_DIRECTORY")
                .map(|dir| Path::new(&dir).join(name))
                .filter(|path| path.is_file())
        })?;
    let text = std::fs::read_to_string(&from_file).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const FILE: &str = r#"
[server]
listen = "127.0.0.1:9470"
workers = 2

[exchange]
fee_rate = "0.0004"

[[symbols]]
symbol = "BTCUSDT"
max_leverage = 20

[[symbols]]
symbol = "ETHUSDT"
max_leverage = 10
"#;

    #[test]
    fn overrides_reach_tables_and_entries_typed_like_what_they_replace() {
        let mut file: Table = toml::from_str(FILE).unwrap();
        let found = overrides(vars(&[
            ("SENTINEL__SERVER__LISTEN", "0.0.0.0:9470"),
            ("SENTINEL__SERVER__WORKERS", "4"),
            ("SENTINEL__EXCHANGE__FEE_RATE", "0.0002"),
            ("SENTINEL__SYMBOLS__ethusdt__MAX_LEVERAGE", "5"),
            ("SENTINEL__SYMBOLS__0__QUANTITY_STEP", "0.001"),
            ("SENTINEL__RISK__MAX_OPEN_POSITIONS", "3"),
            ("OTHER", "x"),
            ("SENTINEL__", "x"),
        ]));
        assert_eq!(found.len(), 6);
        let applied = apply(&mut file, &found).unwrap();
        assert!(
            applied.contains(&"symbols[1].max_leverage".to_string()),
            "{applied:?}"
        );
        assert_eq!(file["server"]["listen"].as_str(), Some("0.0.0.0:9470"));
        assert_eq!(file["server"]["workers"].as_integer(), Some(4));
        // A string stays a string: the amount is read exactly.
        assert_eq!(file["exchange"]["fee_rate"].as_str(), Some("0.0002"));
        assert_eq!(file["symbols"][1]["max_leverage"].as_integer(), Some(5));
        assert_eq!(file["symbols"][0]["quantity_step"].as_str(), Some("0.001"));
        assert_eq!(file["risk"]["max_open_positions"].as_integer(), Some(3));
    }

    #[test]
    fn an_override_that_cannot_apply_says_which_and_why() {
        let mut file: Table = toml::from_str(FILE).unwrap();
        let bad = |name: &str, value: &str| {
            let mut file = file.clone();
            apply(&mut file, &overrides(vars(&[(name, value)]))).unwrap_err()
        };
        assert!(bad("SENTINEL__SERVER__WORKERS", "many").contains("SENTINEL__SERVER__WORKERS"));
        assert!(bad("SENTINEL__SYMBOLS__SOLUSDT__MAX_LEVERAGE", "5").contains("no entry `solusdt`"));
        assert!(bad("SENTINEL__SYMBOLS__MAX_LEVERAGE", "5").contains("names an entry"));
        assert!(bad("SENTINEL__SERVER__LISTEN__PORT", "1").contains("is a value"));
        assert!(apply(&mut file, &[]).unwrap().is_empty());
    }

    #[test]
    fn secrets_come_from_the_variable_a_file_or_a_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token.txt"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("SENTINEL_ADMIN_TOKEN"), "from-credentials").unwrap();
        let file = dir.path().join("token.txt").display().to_string();
        let creds = dir.path().display().to_string();
        let env = move |name: &str| match name {
            "DIRECT" => Some("direct".to_string()),
            "FILED_FILE" => Some(file.clone()),
            "CREDENTIALS_DIRECTORY" => Some(creds.clone()),
            _ => None,
        };
        assert_eq!(secret_lookup("DIRECT", &env).as_deref(), Some("direct"));
        assert_eq!(secret_lookup("FILED", &env).as_deref(), Some("from-file"));
        assert_eq!(
            secret_lookup("SENTINEL_ADMIN_TOKEN", &env).as_deref(),
            Some("from-credentials")
        );
        assert_eq!(secret_lookup("MISSING", &env), None);
    }
}
