//! `cutover plan check` through the real binary: the shipped plans pass, and a broken plan
//! fails with one `file:line:col:` line per problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plan_check(files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "check"])
        .args(files)
        .output()
        .expect("run cutover")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

fn shipped_plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("plans/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_plan_passes() {
    let files = shipped_plans();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["demo.toml", "production.toml", "staging.toml"] {
        assert!(
            names.iter().any(|n| n == required),
            "plans/{required} is missing: {names:?}"
        );
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = plan_check(&paths);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "", "no errors expected");
    for file in &files {
        let line = format!("{}: ok — ", file.display());
        assert!(
            stdout.contains(&line),
            "no ok line for {}:\n{stdout}",
            file.display()
        );
    }
    assert_eq!(stdout.lines().count(), files.len(), "{stdout}");
}

/// A typo'd key on line 5 and a falling weight on line 11 (its value at column 12).
const BAD: &str = r#"name = "bad"

[[steps]]
weight = 10
wieght = 20

[[steps]]
weight = 50

[[steps]]
  weight = 25
"#;

#[test]
fn a_bad_plan_fails_with_every_problem_positioned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).expect("write plan");

    let out = plan_check(&[&file]);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad plan must fail; stderr:\n{stderr}"
    );
    assert_eq!(text(&out.stdout), "", "nothing is ok");

    let shown = file.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem:\n{stderr}");
    assert_eq!(
        lines[0],
        format!("{shown}:5:1: unknown key `wieght` in [[steps]] — did you mean `weight`?")
    );
    let falling =
        format!("{shown}:11:12: step 3: `weight` 25 is not above the previous step's weight 50 — ");
    assert!(
        lines[1].starts_with(&falling),
        "{:?} does not start with {falling:?}",
        lines[1]
    );
    assert!(lines[1].contains("above 50"), "{}", lines[1]);
}

#[test]
fn good_and_unreadable_files_are_each_reported_and_the_exit_is_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "name = \"g\"\n[[steps]]\nweight = 100\n").expect("write plan");
    let missing = dir.path().join("missing.toml");

    let out = plan_check(&[&good, &missing]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("{}: ok — 1 step to 100%, 0 gates\n", good.display())
    );
    let stderr = text(&out.stderr);
    let expected = format!("{}: cannot read the plan: ", missing.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
}
