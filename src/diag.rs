//! Diagnostics for files people write (the config and the policies): each problem names the file, the line
//! and column, and what was expected. Loading collects every problem before failing.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a problem is: errors stop a load, warnings are printed and the load goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works, but probably not as its author meant.
    Warning,
}

/// One problem at one place in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as it was named to Postern.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based column (in characters); 0 when the problem is about the whole file.
    pub column: usize,
    /// What is wrong and what is expected instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {kind}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {kind}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

/// Every problem found in one load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when at least one problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Adds every problem of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Adds an error about a whole file.
    pub fn file_error(&mut self, file: &Path, message: impl Into<String>) {
        self.0.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A file's text, kept to turn byte spans into lines and columns.
#[derive(Debug)]
pub struct Source<'a> {
    /// The file's path.
    pub path: &'a Path,
    /// Its contents.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    /// A source named `path` holding `text`.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before.get(line_start..).map(|s| s.chars().count()).unwrap_or(0) + 1;
        (line, column)
    }

    /// A diagnostic at `span`.
    pub fn at(&self, severity: Severity, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_column(span.start);
        Diagnostic { severity, file: self.path.to_path_buf(), line, column, message: message.into() }
    }

    /// An error at `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.at(Severity::Error, span, message)
    }

    /// A warning at `span`.
    pub fn warning(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.at(Severity::Warning, span, message)
    }

    /// Parses the whole file as TOML into `T`; a syntax or shape error becomes one diagnostic.
    pub fn parse_toml<T: serde::de::DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        toml::from_str(self.text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span() {
                Some(span) => self.error(span, message),
                None => {
                    Diagnostic { severity: Severity::Error, file: self.path.to_path_buf(), line: 0, column: 0, message }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let path = PathBuf::from("x.toml");
        let src = Source::new(&path, "a = 1\nbé = 2\n");
        assert_eq!(src.line_column(0), (1, 1));
        assert_eq!(src.line_column(6), (2, 1));
        assert_eq!(src.line_column(9), (2, 3));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_position() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let path = PathBuf::from("x.toml");
        let src = Source::new(&path, "a = 1\nb = 2\n");
        let err = src.parse_toml::<T>().unwrap_err();
        assert_eq!((err.line, err.column), (2, 1));
        assert!(err.message.contains("unknown field `b`"), "{}", err.message);
        assert_eq!(err.to_string().split(": ").next(), Some("x.toml:2:1"));
    }
}
