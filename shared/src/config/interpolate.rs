//! `${VAR}` and `${VAR:-default}` in the YAML file, from the environment.

use crate::error::{Error, Result};
use crate::ident::is_identifier;

/// Replaces `${VAR}` and `${VAR:-default}` with environment values. An unset `${VAR}` without a default is
/// an error naming the variable and the line, so a missing secret cannot silently become an empty string.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Error::Config(format!(
                    "config line {}: unterminated ${{...}}",
                    lineno + 1
                )));
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if !is_identifier(name) {
                return Err(Error::Config(format!(
                    "config line {}: bad variable name {name:?}",
                    lineno + 1
                )));
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(Error::Config(format!(
                        "config line {}: environment variable {name} is not set",
                        lineno + 1
                    )));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}
