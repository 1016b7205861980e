//! Source positions and suggestions for human-facing errors in config and plan files.
//!
//! Owns: byte offset → `line:col` conversion and "did you mean" lookups. Knows nothing of the
//! formats themselves.

/// 1-based line and column of a byte offset in `text` (columns count characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// True when 1-based `line:col` (columns in characters) points into `text` or just past the
/// end of one of its lines: what every reported position must satisfy (the fuzz targets and
/// the smoke fuzzer check it).
pub fn position_in(text: &str, line: usize, col: usize) -> bool {
    line >= 1
        && col >= 1
        && text
            .split('\n')
            .nth(line - 1)
            .is_some_and(|l| col <= l.chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The closest candidate to `word` when it is a plausible typo of it.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn positions_inside_the_text_only() {
        let text = "a = 1\nbé = 2\n";
        assert!(position_in(text, 1, 6));
        assert!(position_in(text, 2, 7));
        assert!(position_in(text, 3, 1));
        assert!(!position_in(text, 2, 8));
        assert!(!position_in(text, 4, 1));
        assert!(!position_in(text, 0, 1));
        let (line, col) = line_col(text, text.len());
        assert!(position_in(text, line, col));
    }

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["weight", "hold", "approval", "checks"];
        assert_eq!(did_you_mean("wieght", &keys), Some("weight"));
        assert_eq!(did_you_mean("approvl", &keys), Some("approval"));
        assert_eq!(did_you_mean("zzz", &keys), None);
    }
}
