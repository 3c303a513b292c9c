//! The Grafana dashboard (`deploy/grafana/billbox.json`) and the Prometheus
//! alert rules (`deploy/prometheus/billbox-rules.yaml`): every billbox
//! metric they use is on a real billbox's `/metrics`; the rules pass
//! `promtool check rules` (Debian's `prometheus`, installed by `.ci/run`),
//! or a structural check of the YAML where promtool is missing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use billbox_testkit::billing::{Log, Outage};
use billbox_testkit::http::http_request;
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `billbox_*` metric names in a PromQL text.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = promql;
    while let Some(i) = rest.find("billbox_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

/// Every `expr` (and templating query) of the dashboard.
fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The `expr:` values of the rules file.
fn rule_queries(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

/// The metric names on a `/metrics` page.
fn scraped_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_the_rules_use_is_served() {
    // A billbox with something of everything: records on a port, a quiet
    // port, a primary that is down (the secondary answers), a fire-once
    // carbon copy that is down, and a refused transaction.
    let log = Log::default();
    let servers = Outage::start(&log);
    let site = Site::new();
    let config = site.config(&format!(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_records = 5\n\
         [[ports]]\nname = \"quiet\"\nlisten = \"127.0.0.1:0\"\nquiet_alarm = \"1s\"\n\
         {}\
         [transactions]\nlisten = \"127.0.0.1:0\"\nproperty_id = \"Hotel-1\"\n\
         [store]\nretain = \"1h\"\n",
        servers.toml()
    ));
    let bb = Billbox::start(&config);
    let _pbx = bb.send("p", b"r1\nr2\nr3\nr4\nr5\nr6\n");
    let api = bb.transactions_addr(WAIT);
    let (status, _, _) = http_request(
        api,
        "POST",
        "/v1/transactions",
        &["Content-Type: application/json"],
        b"{\"not\": \"a transaction\"}",
    );
    assert_eq!(status, 400);
    wait_until(WAIT, || {
        (servers.secondary.acked().len() >= 6).then_some(())
    })
    .expect("delivered");
    let page = wait_until(WAIT, || {
        let page = bb.metrics();
        (page.contains("billbox_alarm{") && page.contains("billbox_files_closed_total{"))
            .then_some(page)
    })
    .expect("the quiet alarm and a closed file");
    let served = scraped_names(&page);

    let dashboard: serde_json::Value =
        serde_json::from_str(&repo("deploy/grafana/billbox.json")).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 15, "{queries:?}");
    let rules = repo("deploy/prometheus/billbox-rules.yaml");
    let rule_exprs = rule_queries(&rules);
    assert!(rule_exprs.len() >= 8, "{rule_exprs:?}");

    let mut missing = Vec::new();
    for (source, q) in queries
        .iter()
        .map(|q| ("deploy/grafana/billbox.json", q))
        .chain(rule_exprs.iter().map(|q| ("billbox-rules.yaml", q)))
    {
        for name in metric_names(q) {
            if !served.contains(&name) {
                missing.push(format!("{source}: {name} (in {q})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics a real billbox does not serve:\n{}\n\nserved: {served:?}",
        missing.join("\n")
    );
    // The docs' copy of the rules is the file.
    let docs = repo("docs/operations.md");
    for e in &rule_exprs {
        assert!(
            docs.contains(e.as_str()),
            "docs/operations.md lacks the rule {e}"
        );
    }
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn the_dashboard_is_a_grafana_dashboard() {
    let v: serde_json::Value =
        serde_json::from_str(&repo("deploy/grafana/billbox.json")).expect("JSON");
    assert_eq!(v["uid"], "billbox");
    assert!(v["schemaVersion"].as_u64().is_some_and(|s| s >= 36));
    let panels = v["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(grid[k].is_u64(), "panel {id} lacks gridPos.{k}");
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {id} uses the datasource variable"
            );
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {id} has queries"
            );
        }
    }
    let vars: Vec<&str> = v["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/billbox-rules.yaml");
    match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "promtool check rules:\n{text}");
            assert!(text.contains("SUCCESS"), "{text}");
        }
        Err(_) => {
            assert!(
                std::env::var_os("BILLBOX_CI").is_none(),
                "promtool is missing, and .ci/run installs it"
            );
            // No promtool: the shape Prometheus expects, checked by hand.
            println!("promtool is missing (apt install prometheus): checking the YAML's shape");
            let yaml = repo("deploy/prometheus/billbox-rules.yaml");
            assert!(yaml.lines().any(|l| l == "groups:"), "no groups:");
            let mut alerts = BTreeSet::new();
            let mut pending: Option<String> = None;
            for line in yaml.lines().map(str::trim) {
                if let Some(name) = line.strip_prefix("- alert:") {
                    assert!(pending.is_none(), "{pending:?} has no expr");
                    let name = name.trim().to_string();
                    assert!(alerts.insert(name.clone()), "alert {name} twice");
                    pending = Some(name);
                } else if line.starts_with("expr:") {
                    assert!(pending.take().is_some(), "an expr outside an alert");
                }
                assert!(!line.contains('\t'), "a tab in the YAML");
            }
            assert!(pending.is_none() && !alerts.is_empty());
        }
    }
}
