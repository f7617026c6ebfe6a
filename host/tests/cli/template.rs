//! `clemhost template render`: the chat-template corpus through the real
//! binary, and the command's options and errors as a user meets them.

use crate::util::{shared_dir, stderr, stdout, TestEnv};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// Where two strings first differ, with some context, for failure output.
fn diff(want: &str, got: &str) -> String {
    let at = want
        .char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| want.len().min(got.len()));
    let from = want[..at]
        .char_indices()
        .rev()
        .nth(40)
        .map_or(0, |(i, _)| i);
    let from_got = from.min(got.len());
    let tail = |s: &str, start: usize| -> String {
        s.get(start..).unwrap_or("").chars().take(100).collect()
    };
    format!(
        "first difference at byte {at} (want {} bytes, got {}):\n    want …{:?}\n    got  …{:?}",
        want.len(),
        got.len(),
        tail(want, from),
        tail(got, from_got)
    )
}

#[test]
fn every_corpus_case_renders_as_transformers_does() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("chat-templates");
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json is readable");
    let corpus: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let clock = corpus["render_settings"]["strftime_now_clock"]
        .as_str()
        .expect("render_settings.strftime_now_clock is a string");
    let cases = corpus["cases"].as_array().expect("cases is a list");
    assert!(!cases.is_empty(), "cases.json has no cases");

    let env = TestEnv::new();
    let mut template_files: HashMap<String, PathBuf> = HashMap::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["template"].as_str().expect("case.template");
        let template = template_files
            .entry(name.to_owned())
            .or_insert_with(|| {
                let src = std::fs::read_to_string(dir.join("templates").join(name))
                    .expect("the case's template file exists");
                env.write(&format!("templates/{name}"), &src)
            })
            .clone();
        let messages = env.write(
            &format!("messages/{i}.json"),
            &serde_json::to_string(&case["messages"]).expect("messages serialize"),
        );
        let mut cmd = env.cmd();
        cmd.args(["template", "render", "--template"])
            .arg(&template)
            .arg("--messages")
            .arg(&messages)
            .args(["--now", clock]);
        if case["add_generation_prompt"] == Value::Bool(false) {
            cmd.arg("--no-generation-prompt");
        }
        if let Some(bos) = case["bos_token"].as_str() {
            cmd.arg(format!("--bos-token={bos}"));
        }
        if let Some(eos) = case["eos_token"].as_str() {
            cmd.arg(format!("--eos-token={eos}"));
        }
        let out = cmd.output().expect("clemhost runs");
        let got = stdout(&out);
        let code = out.status.code();
        let problem = match &case["expected"] {
            Value::String(want) => {
                if code != Some(0) {
                    Some(format!("exit {code:?}, stderr {:?}", stderr(&out)))
                } else if &got != want {
                    Some(diff(want, &got))
                } else {
                    None
                }
            }
            Value::Object(err) => {
                let kind = err["error_type"].as_str().unwrap_or_default();
                let message = err["error"].as_str().unwrap_or_default();
                if code != Some(3) || !got.is_empty() {
                    Some(format!(
                        "expected the template to raise {kind} ({message:?}); got exit {code:?}, stdout {got:?}"
                    ))
                } else if kind == "TemplateError" && stderr(&out) != format!("{message}\n") {
                    Some(format!(
                        "stderr should be the template's message {message:?}, got {:?}",
                        stderr(&out)
                    ))
                } else {
                    None
                }
            }
            other => panic!("case {i}: unexpected `expected` {other}"),
        };
        if let Some(p) = problem {
            failures.push(format!(
                "case {i}: {name} / {} / add_generation_prompt={}: {p}",
                case["conversation"], case["add_generation_prompt"]
            ));
        }
    }
    for f in failures.iter().take(5) {
        eprintln!("{f}\n");
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases differ from transformers (first ones above)",
        failures.len(),
        cases.len()
    );
}

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn user_hi(env: &TestEnv) -> PathBuf {
    env.write("hi.json", r#"[{"role": "user", "content": "Hi"}]"#)
}

#[test]
fn prints_the_prompt_exactly_with_no_newline_added() {
    let env = TestEnv::new();
    env.write("t.jinja", CHATML);
    user_hi(&env);
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "hi.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "hi.json",
        "--no-generation-prompt",
    ]);
    assert_eq!(stdout(&out), "<|im_start|>user\nHi<|im_end|>\n");
}

#[test]
fn a_raising_template_prints_its_message_and_exits_3() {
    let env = TestEnv::new();
    env.write(
        "t.jinja",
        "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok",
    );
    env.write("sys.json", r#"[{"role": "system", "content": "Be nice."}]"#);
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "sys.json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "System role not supported\n");
}

/// A chat template is not ours: what it raises reaches the terminal with
/// its control characters escaped, and a `tojson` indent that would build
/// gigabytes in one filter call is an error.
#[test]
fn hostile_templates_neither_reach_the_terminal_nor_exhaust_memory() {
    let env = TestEnv::new();
    user_hi(&env);
    env.write(
        "t.jinja",
        "{{ raise_exception('a\u{1b}]0;owned\u{7}\u{1b}[2Jb') }}",
    );
    let args = [
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "hi.json",
    ];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "a\\u{1b}]0;owned\\u{7}\\u{1b}[2Jb\n");
    env.write("t.jinja", "{{ messages | tojson(indent=1000000000) }}");
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("indent is longer than 256"),
        "{}",
        stderr(&out)
    );
}

/// Values repeated beyond reason: a string repeat of 100 MB, and a nested
/// list repeat written out by one `string` or `tojson` call (each a single
/// step for the fuel). Each stops fast, naming the template and the limit.
#[test]
fn templates_that_build_huge_values_stop_fast_naming_the_file_and_the_limit() {
    let env = TestEnv::new();
    user_hi(&env);
    for (src, limit) in [
        (r#"{{ "x" * 100000000 }}"#, "64 MB"),
        ("{{ ([[1] * 20000] * 20000) | string | length }}", "2 MiB"),
        ("{{ ([[1] * 20000] * 20000) | tojson | length }}", "2 MiB"),
    ] {
        env.write("big.jinja", src);
        let started = std::time::Instant::now();
        let out = env.run(&[
            "template",
            "render",
            "--template",
            "big.jinja",
            "--messages",
            "hi.json",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{src}: {err}");
        assert!(
            err.contains("big.jinja")
                && err.contains("chat template stopped")
                && err.contains(limit),
            "{src}: {err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{src} took {:?}",
            started.elapsed()
        );
    }
}

/// Steps the fuel never sees: list `+` is lazy, so doubling a list 34 times
/// costs 34 steps, and then the engine copies 2^34 items out in one (in a
/// loop over a namespace, or unrolled). clemhost renders in a worker
/// process with a memory cap and a deadline: each stops with the limits
/// named, and the next rendering works.
#[test]
fn templates_whose_single_steps_explode_are_stopped_by_the_worker_limits() {
    let env = TestEnv::new();
    user_hi(&env);
    let doubling = |n: u32, tail: &str| {
        format!(
            "{{% set s = namespace(v=[1]) %}}{{% for i in range({n}) %}}\
             {{% set s.v = s.v + s.v %}}{{% endfor %}}{tail}"
        )
    };
    // Which limit comes first depends on the machine; the message names both.
    let unrolled = format!(
        "{{% set v = [1] %}}{}{{{{ v | length }}}}",
        "{% set v = v + v %}".repeat(34)
    );
    for src in [doubling(34, "ok"), unrolled] {
        env.write("grow.jinja", &src);
        let out = env.run(&[
            "template",
            "render",
            "--template",
            "grow.jinja",
            "--messages",
            "hi.json",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{src}: {err}");
        assert!(
            err.contains("grow.jinja") && err.contains("chat template stopped"),
            "{src}: {err}"
        );
        assert!(
            err.contains("10 s") && err.contains("1 GiB"),
            "{src}: {err}"
        );
    }
    // Up to the depth the engine keeps lazy, and with a length query only,
    // the same template is fine.
    env.write("grow.jinja", &doubling(30, "{{ s.v | length }}"));
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "grow.jinja",
        "--messages",
        "hi.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1073741824");
}

#[test]
fn an_engine_error_exits_3_and_names_the_template() {
    let env = TestEnv::new();
    env.write("t.jinja", "{{ functions() }}");
    user_hi(&env);
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "hi.json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("t.jinja"), "{}", stderr(&out));
}

#[test]
fn tokens_variables_and_clock_reach_the_template() {
    let env = TestEnv::new();
    env.write(
        "t.jinja",
        "{{ bos_token }}|{{ eos_token is defined }}|{{ pad_token }}|{{ enable_thinking }}|{{ strftime_now('%d %b %Y') }}",
    );
    user_hi(&env);
    env.write(
        "tokens.json",
        r#"{"pad_token": "<pad>", "bos_token": "<ignored>"}"#,
    );
    env.write("kwargs.json", r#"{"enable_thinking": false}"#);
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "hi.json",
        "--bos-token",
        "<s>",
        "--special-tokens",
        "tokens.json",
        "--kwargs",
        "kwargs.json",
        "--now",
        "2025-03-14T09:26:53",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<s>|False|<pad>|False|14 Mar 2025");
}

#[test]
fn merge_roles_applies_clemcores_preprocessing() {
    let env = TestEnv::new();
    env.write("t.jinja", CHATML);
    env.write(
        "m.json",
        r#"[{"role": "system", "content": ""}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#,
    );
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "m.json",
        "--merge-roles",
        "--no-generation-prompt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<|im_start|>user\na\n\nb<|im_end|>\n");
}

#[test]
fn bad_files_are_named_with_line_and_column() {
    let env = TestEnv::new();
    env.write("t.jinja", CHATML);
    env.write("bad.json", "[\n  {\"role\": \"user\",}\n]");
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "bad.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.json:2:"), "{err}");

    user_hi(&env);
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "missing.jinja",
        "--messages",
        "hi.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.jinja"), "{}", stderr(&out));

    env.write("broken.jinja", "{% for m in messages %}");
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "broken.jinja",
        "--messages",
        "hi.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("broken.jinja"), "{}", stderr(&out));

    env.write("empty.json", "[]");
    let out = env.run(&[
        "template",
        "render",
        "--template",
        "t.jinja",
        "--messages",
        "empty.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));

    let out = env.run(&["template", "render", "--messages", "hi.json"]);
    assert_eq!(out.status.code(), Some(2), "a template source is required");
}

#[test]
fn a_model_renders_with_its_tokenizers_template_and_tokens() {
    let env = TestEnv::new();
    let model_dir = env.path().join("tiny-model");
    env.write(
        "tiny-model/tokenizer_config.json",
        r#"{"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if enable_thinking is defined %}T={{ enable_thinking }}{% endif %}"}"#,
    );
    let registry = serde_json::json!([
        {"model_name": "tiny", "backend": "huggingface_local",
         "huggingface_id": model_dir.to_string_lossy(),
         "model_config": {"premade_chat_template": true, "eos_to_cull": "</s>",
                          "chat_template_kwargs": {"enable_thinking": false}}},
        {"model_name": "tiny-custom", "backend": "huggingface_local",
         "huggingface_id": model_dir.to_string_lossy(),
         "model_config": {"premade_chat_template": false, "eos_to_cull": "</s>",
                          "custom_chat_template": "custom {{ bos_token }}{{ messages[0].content }}"}}
    ]);
    env.write("reg.json", &registry.to_string());
    user_hi(&env);
    let base = [
        "--no-default-registry",
        "--registry",
        "reg.json",
        "template",
        "render",
        "--messages",
        "hi.json",
    ];

    let out = env.run(&[&base[..], &["-m", "tiny"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<s>[user]Hi</s>T=False");

    let out = env.run(&[&base[..], &["-m", "tiny-custom"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "custom <s>Hi");

    let out = env.run(&[&base[..], &["-m", "tiny", "--bos-token", "B"]].concat());
    assert_eq!(stdout(&out), "B[user]Hi</s>T=False");
}

#[test]
fn a_model_that_is_not_on_disk_says_what_to_do() {
    let env = TestEnv::new();
    env.write(
        "reg.json",
        r#"[{"model_name": "far", "backend": "huggingface_local", "huggingface_id": "org/not-downloaded",
             "model_config": {"premade_chat_template": true, "eos_to_cull": "x"}}]"#,
    );
    user_hi(&env);
    let out = env
        .cmd()
        .env("HF_HUB_CACHE", env.path().join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "--no-default-registry",
            "--registry",
            "reg.json",
            "template",
            "render",
            "-m",
            "far",
            "--messages",
            "hi.json",
        ])
        .output()
        .expect("clemhost runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("org/not-downloaded") && err.contains("--template"),
        "{err}"
    );
}

/// A minimal GGUF v3 file: a chat template and a three-token vocabulary.
fn write_gguf(path: &std::path::Path, template: &str) {
    fn s(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    s(&mut out, "tokenizer.chat_template");
    out.extend_from_slice(&8u32.to_le_bytes());
    s(&mut out, template);
    s(&mut out, "tokenizer.ggml.tokens");
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&3u64.to_le_bytes());
    for t in ["<unk>", "<|im_start|>", "<|im_end|>"] {
        s(&mut out, t);
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", 1u32),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        s(&mut out, key);
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    std::fs::write(path, out).expect("write the test GGUF file");
}

#[test]
fn a_llamacpp_model_renders_the_gguf_template() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path().join("gguf-repo")).expect("mkdir");
    write_gguf(
        &env.path().join("gguf-repo/model-q4.gguf"),
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
    );
    let registry = serde_json::json!([
        {"model_name": "g", "backend": "llamacpp",
         "huggingface_id": env.path().join("gguf-repo").to_string_lossy(),
         "model_config": {"premade_chat_template": true, "filename": "model-q4.gguf", "eos_to_cull": "<|im_end|>"}}
    ]);
    env.write("reg.json", &registry.to_string());
    user_hi(&env);
    let out = env.run(&[
        "--no-default-registry",
        "--registry",
        "reg.json",
        "template",
        "render",
        "-m",
        "g",
        "--messages",
        "hi.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<|im_start|>Hi<|im_end|>");
}

#[test]
fn a_model_in_the_hf_cache_is_found_offline() {
    let env = TestEnv::new();
    env.write("hub/models--org--tiny/refs/main", "0123abcd");
    env.write(
        "hub/models--org--tiny/snapshots/0123abcd/tokenizer_config.json",
        r#"{"eos_token": "<|end|>", "chat_template": "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}"#,
    );
    env.write(
        "reg.json",
        r#"[{"model_name": "tiny", "backend": "huggingface_local", "huggingface_id": "org/tiny",
             "model_config": {"premade_chat_template": true, "eos_to_cull": "x"}}]"#,
    );
    user_hi(&env);
    let out = env
        .cmd()
        .env("HF_HUB_CACHE", env.path().join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "--no-default-registry",
            "--registry",
            "reg.json",
            "template",
            "render",
            "-m",
            "tiny",
            "--messages",
            "hi.json",
        ])
        .output()
        .expect("clemhost runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hi<|end|>");
}
