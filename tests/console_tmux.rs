//! The real console binary in tmux against a live server: it shows the run and the envs, and
//! `p` pauses the run (issue 6). Needs `tmux` (installed by .ci/run).

mod common;

use std::process::Command;

use common::server::bin;
use common::{eventually, server_with, wait_until, WAIT};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (see .ci/run)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_the_run_and_p_pauses_it() {
    let (s, _envs, _dir) = server_with("").await;
    let plan =
        "name = \"console-e2e\"\n[[steps]]\nweight = 20\nhold = \"10m\"\n[[steps]]\nweight = 100\n";
    let resp = s
        .api()
        .post(s.url("/v1/start"))
        .body(plan)
        .send()
        .await
        .expect("start");
    assert_eq!(resp.status(), 200);

    let name = format!("cutover-test-{}", std::process::id());
    let session = Session(name.clone());
    let cmd = format!("{} console --admin {}", bin(), s.admin);
    let out = Command::new("tmux")
        .args(["new-session", "-d", "-s", &name, "-x", "100", "-y", "30"])
        .arg("-e")
        .arg(format!("CUTOVER_TOKEN={}", s.token))
        .arg(&cmd)
        .output()
        .expect("tmux");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let shown = eventually(WAIT, || async {
        let screen = tmux(&["capture-pane", "-p", "-t", &session.0]).to_lowercase();
        screen.contains("console-e2e")
            && screen.contains("running")
            && screen.contains("fallback")
            && screen.contains("users")
    })
    .await;
    let screen = tmux(&["capture-pane", "-p", "-t", &session.0]);
    assert!(shown, "the console did not show the run:\n{screen}");

    tmux(&["send-keys", "-t", &session.0, "p"]);
    s.wait_for_state("paused", WAIT).await;
    let events = s.events().await;
    let pause = events
        .iter()
        .find(|e| e["action"] == "pause")
        .expect("a pause event");
    assert_eq!(pause["actor"], "admin-token (note: console)");
    wait_until("the screen to show the pause", WAIT, || async {
        tmux(&["capture-pane", "-p", "-t", &session.0])
            .to_lowercase()
            .contains("paused")
    })
    .await;
    tmux(&["send-keys", "-t", &session.0, "q"]);
}
