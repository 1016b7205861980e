//! One positioned plan error: where (1-based line and column), what is wrong, how to fix it.
//!
//! Owns only the shape and the text form (`FILE:LINE:COL: what — how to fix`) so that
//! `cutover plan check`, the control API and the CLI print plan errors the same way.

use std::fmt;

/// A problem in a plan, at a 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    /// What is wrong, e.g. "unknown key `wieght` in [[steps]]".
    pub message: String,
    /// How to fix it, e.g. "did you mean `weight`?". May be empty.
    pub hint: String,
}

impl Diagnostic {
    /// The diagnostic at byte `offset` of `text`.
    pub fn at(
        text: &str,
        offset: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let (line, col) = crate::diag::line_col(text, offset);
        Diagnostic {
            line,
            col,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// Formats as `FILE:LINE:COL: what — how to fix`. `file` is a path (`path.display()`) or a
    /// label such as `<request body>`.
    pub fn with_file<F: fmt::Display>(&self, file: F) -> WithFile<'_, F> {
        WithFile { diag: self, file }
    }
}

/// `LINE:COL: what — how to fix` (the hint part is left out when there is none).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " — {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// A [`Diagnostic`] prefixed with the file it belongs to; see [`Diagnostic::with_file`].
#[derive(Debug, Clone, Copy)]
pub struct WithFile<'a, F> {
    diag: &'a Diagnostic,
    file: F,
}

impl<F: fmt::Display> fmt::Display for WithFile<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.diag)
    }
}

/// Every diagnostic as `FILE:LINE:COL: ...`, one per line (no trailing newline).
pub fn render<F: fmt::Display>(file: F, diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.with_file(&file).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
