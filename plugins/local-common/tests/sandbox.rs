//! The caller's side of the template worker, against stand-in programs:
//! whatever the program does, a rendering fails with a message saying what
//! happened, and never hangs or takes the caller down. (The real worker,
//! clemhost itself, is tested through `clemhost template render`.)
//!
//! One test function: the worker is chosen by an environment variable,
//! which is the whole process's.

#![cfg(unix)]

use clemhost_local_common::template::{ChatTemplate, RenderInput, TemplateError};
use clemhost_local_common::template_sandbox::WORKER_ENV;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_worker_that_is_missing_wrong_or_dies_fails_the_rendering_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let template = ChatTemplate::new("{{ messages[0].content }}").unwrap();
    let input = RenderInput::new(vec![json!({"role": "user", "content": "hi"})]);
    let render_with = |exe: &std::path::Path| {
        std::env::set_var(WORKER_ENV, exe);
        let result = template.render(&input);
        std::env::remove_var(WORKER_ENV);
        result
    };

    let missing = dir.path().join("no-such-worker");
    match render_with(&missing) {
        Err(TemplateError::Render(m)) => {
            assert!(
                m.contains("could not start") && m.contains("no-such-worker"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }

    let stranger = script(dir.path(), "stranger", "echo 'hello, I am cat'; cat");
    match render_with(&stranger) {
        Err(TemplateError::Render(m)) => assert!(
            m.contains("not a clemhost template worker") && m.contains("hello, I am cat"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }

    // Says it is a worker, then ends (as one that runs out of memory does).
    let dies = script(
        dir.path(),
        "dies",
        "echo 'clemhost-template-worker 1'; read line; exit 7",
    );
    match render_with(&dies) {
        Err(TemplateError::Limit(m)) => {
            assert!(m.contains("exited with status 7"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    // Answers garbage.
    let garbage = script(
        dir.path(),
        "garbage",
        "echo 'clemhost-template-worker 1'; read line; echo '{not json'; cat >/dev/null",
    );
    match render_with(&garbage) {
        Err(TemplateError::Render(m)) => assert!(m.contains("unreadable"), "{m}"),
        other => panic!("{other:?}"),
    }

    // A worker that reads its requests and answers as the real one does
    // (the reply format is the worker's own: a rendered text).
    let echo = script(
        dir.path(),
        "answers",
        r#"echo 'clemhost-template-worker 1'; while read line; do echo '{"Rendered":"from the worker"}'; done"#,
    );
    assert_eq!(render_with(&echo).unwrap(), "from the worker");
    assert_eq!(render_with(&echo).unwrap(), "from the worker");

    // Without the variable the template renders here.
    assert_eq!(template.render(&input).unwrap(), "hi");
}
