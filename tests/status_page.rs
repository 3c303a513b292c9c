//! The status page and `billbox status`, end to end: the real binary with
//! ports up, a quiet port and a destination in outage; the page loaded in
//! Debian's headless `chromium` (its rendered DOM read back and screenshots
//! taken); the terminal table and its exit codes.
//!
//! `.ci/run` installs chromium; without it the browser test prints SKIPPED.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use billbox_testkit::billing::{Log, Outage};
use billbox_testkit::*;
use scraper::{Html, Selector};

const WAIT: Duration = Duration::from_secs(60);

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Headless chromium on `url` with extra arguments; returns stdout.
fn browse(chromium: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // The page refreshes itself every 5 s: 6.5 s of virtual time
            // runs one refresh (a real fetch) before the DOM is read.
            "--virtual-time-budget=6500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

/// The rendered DOM, parsed.
fn dom(chromium: &Path, profile: &Path, url: &str) -> Html {
    Html::parse_document(&browse(chromium, profile, &["--dump-dom"], url))
}

fn text(doc: &Html, selector: &str) -> String {
    let s = Selector::parse(selector).expect("a selector");
    let el = doc
        .select(&s)
        .next()
        .unwrap_or_else(|| panic!("{selector} is not on the page:\n{}", doc.html()));
    el.text().collect::<String>().trim().to_string()
}

fn has(doc: &Html, selector: &str) -> bool {
    doc.select(&Selector::parse(selector).expect("a selector"))
        .next()
        .is_some()
}

fn records(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("call {i:05}\n")).collect()
}

/// The site of both tests: ports `pbx` and `night` (quiet after 1 s),
/// delivery to a primary that is down and a secondary that answers, and a
/// carbon copy whose server is down.
struct Scene {
    site: Site,
    _log: Log,
    servers: Outage,
    config: PathBuf,
}

fn scene(quiet: bool) -> Scene {
    let log = Log::default();
    let servers = Outage::start(&log);
    let site = Site::new();
    let quiet_alarm = if quiet { "quiet_alarm = \"1s\"\n" } else { "" };
    let config = site.config(&format!(
        "[[ports]]\nname = \"pbx\"\nlisten = \"127.0.0.1:0\"\nalias = \"PBX\"\n\
         billing_records = 20\nbilling_timeout = \"1h\"\n\
         [[ports]]\nname = \"night\"\nlisten = \"127.0.0.1:0\"\nalias = \"NIGHT\"\n{quiet_alarm}{}",
        servers.toml()
    ));
    Scene {
        site,
        _log: log,
        servers,
        config,
    }
}

/// Waits until `/status.json` says `pbx` committed `n` records, nothing
/// waits for delivery, and (from 20 records on) a file of 20 closed; and
/// the secondary has them.
fn wait_total(bb: &Billbox, scene: &Scene, n: u64) {
    wait_until(WAIT, || {
        let (_, body) = bb.get("/status.json");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["ports"][0]["records_total"] == n
            && v["destinations"][0]["backlog"] == 0
            && (n < 20 || v["ports"][0]["last_closed"]["records"] == 20)
            && scene.servers.secondary.acked().len() as u64 >= n)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("pbx never reached {n} records delivered"));
}

#[test]
fn the_status_page_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("BILLBOX_CI").is_none(),
            "chromium is missing, and .ci/run installs it"
        );
        println!("SKIPPED: no chromium (apt install chromium)");
        return;
    };
    let scene = scene(true);
    let bb = Billbox::start(&scene.config);
    let pbx = bb.send("pbx", records(1, 30).as_bytes());
    wait_total(&bb, &scene, 30);
    // The quiet port's alarm (1 s) and the carbon copy's outage.
    wait_until(WAIT, || {
        let (_, body) = bb.get("/status.json");
        (body.contains("\"port_quiet\"") && body.contains("\"outage_since_ms\":1")).then_some(())
    })
    .expect("the quiet alarm and the outage show");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", bb.metrics_addr());

    let doc = dom(&chromium, profile.path(), &url);
    // The page's script ran in the browser and refreshed the page once.
    assert!(
        has(&doc, "html[data-live=ok][data-refreshes='1']"),
        "{}",
        doc.html()
    );
    // Alarms at the top, in words.
    assert!(text(&doc, "#alarms li[data-kind=port_quiet]")
        .starts_with("Port night has received no record for"));
    assert!(has(&doc, "#status[data-healthy=false]"));
    // Ports: pbx up with its 30 records, its open file and last closed one;
    // night listening and quiet.
    assert!(has(&doc, "#port-pbx[data-state=up][data-quiet=false]"));
    assert_eq!(text(&doc, "#port-pbx td.total"), "30");
    assert!(text(&doc, "#port-pbx td.today").starts_with("30"));
    assert!(text(&doc, "#port-pbx td[data-label='Open file']").contains("cycPBX-"));
    let closed = text(&doc, "#port-pbx td[data-label='Last closed file']");
    assert!(
        closed.contains(".txt") && closed.contains("20 records"),
        "{closed}"
    );
    assert!(has(
        &doc,
        "#port-night[data-state=listening][data-quiet=true]"
    ));
    // Destinations: delivery failed over to the secondary, nothing waits;
    // the carbon copy is in an outage.
    assert!(has(
        &doc,
        "[id='destination-delivery'][data-server=secondary]"
    ));
    assert_eq!(text(&doc, "[id='destination-delivery'] td.backlog"), "0");
    assert!(has(&doc, "[id='destination-cc:audit'][data-outage=true]"));
    let outage = text(&doc, "[id='destination-cc:audit'] td[data-label=Outage]");
    assert!(outage.contains("failed attempt"), "{outage}");
    // The store.
    assert!(text(&doc, "#store").contains("Records held"));
    // Nothing of a record's contents is on the page.
    assert!(
        !doc.html().contains("call 000"),
        "record contents on the page"
    );

    // Screenshots, wide and phone-sized (kept for docs/operations.md).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, size) in [("wide", "1280,1000"), ("phone", "390,1500")] {
        let png = shots.join(format!("status-{name}.png"));
        browse(
            &chromium,
            profile.path(),
            &[
                &format!("--window-size={size}"),
                &format!("--screenshot={}", png.display()),
            ],
            &url,
        );
        let bytes = std::fs::read(&png).expect("a screenshot");
        assert_eq!(&bytes[1..4], b"PNG", "{} is a PNG", png.display());
        println!("screenshot: {}", png.display());
    }

    // More records: a second load shows the new counts.
    drop(pbx);
    let _pbx = bb.send("pbx", records(31, 45).as_bytes());
    wait_total(&bb, &scene, 45);
    let doc = dom(&chromium, profile.path(), &url);
    assert_eq!(text(&doc, "#port-pbx td.total"), "45");
    let closed = text(&doc, "#port-pbx td[data-label='Last closed file']");
    assert!(closed.contains("20 records"), "{closed}");
    assert!(scene.site.txt_files("PBX").len() >= 2);
    assert_eq!(bb.terminate(), Some(0));
}

fn status(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("status")
        .args(args)
        .output()
        .expect("billbox status runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn billbox_status_prints_a_table_and_exits_by_health() {
    // Healthy: no quiet alarm, records delivered (by the secondary).
    let scene_ok = scene(false);
    let bb = Billbox::start(&scene_ok.config);
    let _pbx = bb.send("pbx", records(1, 5).as_bytes());
    wait_total(&bb, &scene_ok, 5);
    let addr = bb.metrics_addr().to_string();
    let (code, out, err) = status(&["--addr", &addr]);
    assert_eq!(code, 0, "healthy: {out}{err}");
    assert!(out.contains(": ready, healthy, up "), "{out}");
    let header = out
        .lines()
        .find(|l| l.starts_with("PORT "))
        .expect("a port table");
    let pbx = out
        .lines()
        .find(|l| l.starts_with("pbx "))
        .expect("a pbx row");
    // Aligned: the TOTAL column ends at the same place in both lines.
    let end = header.find("TOTAL").unwrap() + "TOTAL".len();
    assert_eq!(&pbx[end - 1..end], "5", "{header}\n{pbx}");
    assert!(out
        .lines()
        .any(|l| l.starts_with("delivery ") && l.contains("secondary")));
    let (code, json, _) = status(&["--addr", &addr, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["ports"][0]["records_total"], 5);
    assert_eq!(bb.terminate(), Some(0));

    // Alarms: the quiet port.
    let scene_alarm = scene(true);
    let bb = Billbox::start(&scene_alarm.config);
    let addr = bb.metrics_addr().to_string();
    let alarmed = wait_until(WAIT, || {
        let (code, out, _) = status(&["--addr", &addr]);
        (code == 1).then_some(out)
    })
    .expect("exit 1 once the quiet alarm holds");
    assert!(
        alarmed.contains("ALARM  Port night has received no record for"),
        "{alarmed}"
    );
    assert!(alarmed.contains("listening (QUIET)"), "{alarmed}");
    assert_eq!(bb.terminate(), Some(0));

    // Unreachable: nothing listens there any more.
    let (code, out, err) = status(&["--addr", &addr, "--timeout", "2s"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot reach billbox at"), "{err}");
}
