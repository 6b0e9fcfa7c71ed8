//! The documentation holds together: every link in README.md and docs/*.md
//! to a local file resolves, and every `#anchor` names a heading of its
//! file (GitHub's heading ids); every status code the server answers with
//! (the ones its scrape lists from the start) is documented.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files written on another branch at the same time (issue 17.4: DESIGN.md
/// by the `house` branch): a link to one is checked once it exists, and is
/// reported, not failed, until then.
const WRITTEN_ELSEWHERE: [&str; 1] = ["docs/DESIGN.md"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every markdown file under docs/.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines of a markdown text outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && !line.starts_with("    ") {
            lines.push(line);
        }
    }
    lines
}

/// A line with its inline code spans blanked out (a link inside backticks
/// is not a link).
fn without_code(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// Targets of `[text](target)` and `![alt](target)` links; a link's text
/// may span lines, its target may not.
fn links(text: &str) -> Vec<String> {
    let joined: Vec<String> = prose(text).into_iter().map(without_code).collect();
    let joined = joined.join("\n");
    let mut targets = Vec::new();
    let mut rest = joined.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').expect("a link target ends with )");
        let target = after[..end].trim();
        assert!(
            !target.contains(char::is_whitespace),
            "a link target with a blank: {target:?}"
        );
        targets.push(target.to_owned());
        rest = &after[end..];
    }
    targets
}

/// GitHub's id for a heading: lower case; letters, digits, `-` and `_`
/// kept, spaces made `-`, the rest dropped; a repeated id gets `-1`, `-2`…
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#') else { continue };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let id: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 0;
        while !ids.insert(unique.clone()) {
            n += 1;
            unique = format!("{id}-{n}");
        }
    }
    ids
}

#[test]
fn every_local_link_and_anchor_resolves() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("read a document");
        let dir = doc.parent().expect("a directory");
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() { doc.clone() } else { dir.join(path) };
            let name = file.strip_prefix(root()).unwrap_or(&file).to_path_buf();
            let relative = normalise(&name);
            if !file.exists() {
                if WRITTEN_ELSEWHERE.contains(&relative.as_str()) {
                    let note = format!(
                        "NOT YET: {relative} (linked from {}) comes from another branch\n",
                        doc.display()
                    );
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
                    continue;
                }
                broken.push(format!("{}: {target}: no file {relative}", doc.display()));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let ids = heading_ids(&std::fs::read_to_string(&file).expect("read the linked file"));
            if !ids.contains(anchor) {
                broken.push(format!(
                    "{}: {target}: no heading #{anchor} in {relative}",
                    doc.display()
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} local links found: is the link reader broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `a/../b` → `b`, so a file is named the same from every document.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// The checker itself finds what it is meant to: a missing file, a missing
/// anchor, ids as GitHub makes them.
#[test]
fn the_link_reader_reads_links_and_headings_as_github_does() {
    let text = "# Load testing: `ssecommander bench`\n\
        ## Same\n## Same\n\
        ```\n# not a heading [x](in-code.md)\n```\n\
        A [link](a.md#b), an ![image](i.png), `[code](c.md)`, and a\n\
        [link over\ntwo lines](GUIDE.md#jobs).\n";
    assert_eq!(links(text), ["a.md#b", "i.png", "GUIDE.md#jobs"]);
    let ids = heading_ids(text);
    let want: BTreeSet<String> = ["load-testing-ssecommander-bench", "same", "same-1"]
        .map(str::to_owned)
        .into();
    assert_eq!(ids, want);
}

/// Every status the server answers with is documented: its scrape lists
/// each one from the start (at 0), and each must appear in README.md or
/// docs/ as `` `NNN` ``.
#[test]
fn every_status_the_server_answers_with_is_documented() {
    let server = common::Server::start(&[]);
    let reply = server.get("/metrics");
    reply.assert_status(200, "GET /metrics");
    let scrape = String::from_utf8_lossy(&reply.body).into_owned();
    let statuses: Vec<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("ssecommander_requests_total{status=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(statuses.len() >= 10, "the scrape lists the statuses: {scrape}");
    let all: String = documents()
        .iter()
        .map(|d| std::fs::read_to_string(d).expect("read a document"))
        .collect();
    let missing: Vec<&&str> = statuses
        .iter()
        .filter(|s| !all.contains(&format!("`{s}`")) && !all.contains(&format!("`{s} ")))
        .collect();
    assert!(missing.is_empty(), "statuses not documented: {missing:?}");
}
