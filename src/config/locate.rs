//! Maps key paths back to `line:col` in the source text, so every error
//! names where to look.

use toml::de::{DeTable, DeValue};

use super::{ConfigError, Problem};

pub(super) struct Located<'a> {
    file: String,
    text: &'a str,
    root: toml::Spanned<DeTable<'a>>,
}

impl<'a> Located<'a> {
    /// Parses for positions; reports every syntax error at once.
    pub(super) fn parse(file: &str, text: &'a str) -> Result<Self, ConfigError> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            let problems = errors
                .iter()
                .map(|e| {
                    let (line, col) = line_col(text, e.span().map_or(0, |s| s.start));
                    Problem {
                        file: file.to_string(),
                        line,
                        col,
                        key: String::new(),
                        message: first_line(e.message()),
                    }
                })
                .collect();
            return Err(ConfigError::Invalid(problems));
        }
        Ok(Located {
            file: file.to_string(),
            text,
            root,
        })
    }

    pub(super) fn problem_from_toml(&self, e: &toml::de::Error) -> Problem {
        let (line, col) = line_col(self.text, e.span().map_or(0, |s| s.start));
        Problem {
            file: self.file.clone(),
            line,
            col,
            key: String::new(),
            message: first_line(e.message()),
        }
    }

    /// A problem at the deepest existing prefix of `key`
    /// (`routes.frontier.targets[2]` → that array item).
    pub(super) fn problem(&self, key: &str, message: String) -> Problem {
        let offset = self.offset_of(key);
        let (line, col) = line_col(self.text, offset);
        Problem {
            file: self.file.clone(),
            line,
            col,
            key: key.to_string(),
            message,
        }
    }

    fn offset_of(&self, key: &str) -> usize {
        let mut table: &DeTable<'_> = self.root.get_ref();
        let mut best = 0;
        let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
        for segment in key.split('.') {
            let (name, index) = match segment.split_once('[') {
                Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            if let Some(DeValue::Table(t)) = value.map(|v| v.get_ref()) {
                table = t;
            } else if value.is_some() {
                break;
            }
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                break;
            };
            best = k.span().start;
            value = Some(v);
            if let (Some(i), DeValue::Array(items)) = (index, v.get_ref()) {
                match items.get(i) {
                    Some(item) => {
                        best = item.span().start;
                        value = Some(item);
                    }
                    None => break,
                }
            }
        }
        best
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
