//! What every command shares: its options and its output (stdout, for the user's commands only).

use std::io::Write;

/// User-facing output of the CLI commands (never used by the native host). A closed stdout
/// (`quiver history | head`) is not an error worth a panic.
pub(crate) fn out(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

/// Options of one command: `--flag VALUE`, `--flag=VALUE`, switches, and positionals.
#[derive(Debug, Default)]
pub(crate) struct Opts {
    pub(crate) values: Vec<(String, String)>,
    pub(crate) switches: Vec<String>,
    pub(crate) positional: Vec<String>,
}

impl Opts {
    pub(crate) fn parse(
        args: &[String],
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                o.positional.extend(it.by_ref().cloned());
                break;
            }
            if !a.starts_with("--") || a == "-" {
                o.positional.push(a.clone());
                continue;
            }
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (a.as_str(), None),
            };
            if with_value.contains(&flag) {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value"))?,
                };
                o.values.push((flag.to_string(), v));
            } else if switches.contains(&flag) && inline.is_none() {
                o.switches.push(flag.to_string());
            } else {
                return Err(format!("unknown option {flag:?}"));
            }
        }
        Ok(o)
    }

    pub(crate) fn get(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has(&self, flag: &str) -> bool {
        self.switches.iter().any(|s| s == flag)
    }
}
