//! The status page at `/`: one self-contained HTML document rendered from a
//! [`Snapshot`]. No external asset (it works offline and on a gateway's
//! closed network); readable on a phone (tables become cards on a narrow
//! screen); it refreshes itself every few seconds. Without JavaScript it
//! reloads every 10 s; with it, the page fetches itself and swaps its
//! figures in, and the ages ("4 s ago") tick between refreshes.
//!
//! Nothing on it is a record's contents: counts, times, link states, file
//! names and server URLs only. Every text from outside (names, errors,
//! peers) is escaped.

use std::fmt::Write;

use billbox_status::snapshot::{bytes_words, duration_words, number, FileView, Snapshot};

/// How often the page fetches itself again, in milliseconds.
pub const REFRESH_MS: u64 = 5000;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An age that the page's script keeps current: `<span data-since-ms>`.
fn age(at_ms: Option<i64>, now_ms: i64) -> String {
    match at_ms {
        Some(at) => format!(
            "<span class=\"age\" data-since-ms=\"{at}\">{}</span> ago",
            duration_words(now_ms - at)
        ),
        None => "<span class=\"muted\">never</span>".to_string(),
    }
}

fn file(f: &Option<FileView>, now_ms: i64, opened: bool) -> String {
    match f {
        Some(f) => format!(
            "<span class=\"file\">{}</span><br><span class=\"muted\">{} record{}, {} {}</span>",
            escape(&f.name),
            number(f.records),
            if f.records == 1 { "" } else { "s" },
            if opened { "first" } else { "closed" },
            age(Some(f.at_ms), now_ms)
        ),
        None => "<span class=\"muted\">none</span>".to_string(),
    }
}

/// `<td data-label="…">…</td>`: the label heads the cell on a phone.
fn cell(out: &mut String, label: &str, class: &str, html: &str) {
    let _ = write!(
        out,
        "<td data-label=\"{label}\"{}><div>{html}</div></td>",
        if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        }
    );
}

fn state_class(state: &str) -> &'static str {
    match state {
        "up" => "ok",
        "down" | "cannot open" => "warn",
        _ => "muted",
    }
}

/// The whole page.
pub fn render(s: &Snapshot) -> String {
    let now = s.now_ms;
    let mut out = String::with_capacity(16 * 1024);
    let health = if s.alarms.is_empty() {
        "healthy".to_string()
    } else {
        billbox_status::snapshot::plural(s.alarms.len() as u64, "alarm")
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>billbox {gw}: {health}</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\
         <style>{STYLE}</style></head>\
         <body data-now-ms=\"{now}\"><div id=\"status\" data-healthy=\"{healthy}\">\
         <header><h1>billbox <span class=\"gw\">{gw}</span></h1>\
         <p class=\"sub\">version {version} · {ready} · up {up} · \
         <span class=\"live\">updated <span class=\"age\" data-since-ms=\"{now}\">0 ms</span> ago</span></p></header>",
        gw = escape(&s.gateway),
        healthy = s.alarms.is_empty(),
        version = escape(&s.version),
        ready = if s.ready { "ready" } else { "<b class=\"warn\">not ready</b>" },
        up = duration_words(now - s.started_ms),
    );

    // Alarms first, in words.
    if s.alarms.is_empty() {
        out.push_str(
            "<section id=\"alarms\" class=\"healthy\"><h2>Alarms</h2>\
             <p>No alarm: records are coming in and going out as configured.</p></section>",
        );
    } else {
        out.push_str("<section id=\"alarms\" class=\"alarming\"><h2>Alarms</h2><ul>");
        for a in &s.alarms {
            let _ = write!(
                out,
                "<li class=\"alarm\" data-kind=\"{}\" data-subject=\"{}\">{}</li>",
                escape(&a.kind),
                escape(&a.subject),
                escape(&a.text)
            );
        }
        out.push_str("</ul></section>");
    }

    // Ports.
    out.push_str(
        "<section id=\"ports\"><h2>Ports</h2><table><thead><tr><th>Port</th><th>Link</th>\
         <th>State</th><th class=\"n\">Today</th><th class=\"n\">Total</th><th>Last record</th>\
         <th>Open file</th><th>Last closed file</th></tr></thead><tbody>",
    );
    for p in &s.ports {
        let class = state_class(&p.state);
        let _ = write!(
            out,
            "<tr id=\"port-{}\" data-state=\"{}\" data-quiet=\"{}\">",
            escape(&p.name),
            escape(&p.state),
            p.quiet
        );
        cell(&mut out, "Port", "name", &escape(&p.name));
        cell(&mut out, "Link", "", &escape(&p.link));
        let mut state = format!("<b class=\"{class}\">{}</b>", escape(&p.state));
        if p.quiet {
            state.push_str(" <b class=\"alarm\">quiet</b>");
        }
        if let Some(d) = &p.detail {
            let _ = write!(state, "<br><span class=\"muted\">{}</span>", escape(d));
        }
        if let Some(since) = p.state_since_ms {
            let _ = write!(
                state,
                "<br><span class=\"muted\">for <span class=\"age\" data-since-ms=\"{since}\">{}</span></span>",
                duration_words(now - since)
            );
        }
        cell(&mut out, "State", "", &state);
        // Counted by this process: after a start later than midnight, say so.
        let today = if p.today_since_ms > crate::status::midnight_ms(now) {
            format!(
                "{}<br><span class=\"muted\">since start</span>",
                number(p.records_today)
            )
        } else {
            number(p.records_today)
        };
        cell(&mut out, "Today", "n today", &today);
        cell(&mut out, "Total", "n total", &number(p.records_total));
        // Before the first record of this run, a port that has records
        // says so rather than "never" (the newest may be removed already).
        let mut last = match (p.last_record_ms, p.records_total) {
            (None, 1..) => "<span class=\"muted\">none since start</span>".to_string(),
            (at, _) => age(at, now),
        };
        if let Some(q) = p.quiet_alarm_s {
            let _ = write!(
                last,
                "<br><span class=\"muted\">quiet alarm after {}</span>",
                duration_words(q as i64 * 1000)
            );
        }
        cell(&mut out, "Last record", "", &last);
        cell(&mut out, "Open file", "", &file(&p.open_file, now, true));
        cell(
            &mut out,
            "Last closed file",
            "",
            &file(&p.last_closed, now, false),
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");

    // Destinations.
    if !s.destinations.is_empty() {
        out.push_str(
            "<section id=\"destinations\"><h2>Destinations</h2><table><thead><tr>\
             <th>Destination</th><th>Server in use</th><th class=\"n\">Backlog</th>\
             <th>Last success</th><th>Outage</th><th class=\"n\">In flight</th></tr></thead><tbody>",
        );
        for d in &s.destinations {
            let outage = d.outage_since_ms.is_some();
            let _ = write!(
                out,
                "<tr id=\"destination-{}\" data-server=\"{}\" data-outage=\"{outage}\">",
                escape(&d.name),
                escape(d.server.as_deref().unwrap_or("none"))
            );
            cell(
                &mut out,
                "Destination",
                "name",
                &format!(
                    "{}<br><span class=\"muted\">{}</span>",
                    escape(&d.name),
                    escape(&d.kind)
                ),
            );
            let server = match d.server.as_deref() {
                Some(server) => format!(
                    "<b class=\"{}\">{}</b><br><span class=\"muted\">{}</span>",
                    if d.outage_since_ms.is_some() {
                        "alarm"
                    } else if server == "secondary" {
                        "warn"
                    } else {
                        "ok"
                    },
                    escape(server),
                    escape(&d.url)
                ),
                None => format!(
                    "<span class=\"muted\">no attempt yet</span><br><span class=\"muted\">{}</span>",
                    escape(&d.url)
                ),
            };
            cell(&mut out, "Server in use", "", &server);
            cell(
                &mut out,
                "Backlog",
                "n backlog",
                &d.backlog
                    .map_or("<span class=\"muted\">fire-once</span>".into(), number),
            );
            cell(&mut out, "Last success", "", &age(d.last_success_ms, now));
            let outage_html = match d.outage_since_ms {
                Some(since) => {
                    let mut h = format!(
                        "<b class=\"alarm\">for <span class=\"age\" data-since-ms=\"{since}\">{}</span></b><br>\
                         <span class=\"muted\">{} failed attempt{}</span>",
                        duration_words(now - since),
                        number(d.failed_attempts),
                        if d.failed_attempts == 1 { "" } else { "s" }
                    );
                    if let Some(e) = &d.last_error {
                        let _ = write!(h, "<br><span class=\"muted\">{}</span>", escape(e));
                    }
                    if let Some(until) = d.suspended_until_ms.filter(|u| *u > now) {
                        let _ = write!(
                            h,
                            "<br><span class=\"warn\">suspended for {} more</span>",
                            duration_words(until - now)
                        );
                    }
                    h
                }
                None => "<span class=\"ok\">none</span>".to_string(),
            };
            cell(&mut out, "Outage", "", &outage_html);
            cell(
                &mut out,
                "In flight",
                "n",
                &format!("{} / {}", number(d.in_flight), number(d.window)),
            );
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></section>");
    }

    // Transactions.
    if let Some(t) = &s.transactions {
        out.push_str("<section id=\"transactions\"><h2>Transactions</h2><dl>");
        let mut item = |k: &str, v: String| {
            let _ = write!(out, "<div><dt>{k}</dt><dd>{v}</dd></div>");
        };
        item("Submit API", escape(&t.listen));
        item("Submitted", number(t.submitted));
        item("Relayed from an AG", number(t.relayed));
        item("Today", number(t.today));
        item("Refused", number(t.refused));
        item("Last", age(t.last_ms, now));
        item(
            "Open journals",
            if t.open_files.is_empty() {
                file(&None, now, true)
            } else {
                t.open_files
                    .iter()
                    .map(|f| file(&Some(f.clone()), now, true))
                    .collect::<Vec<_>>()
                    .join("<br>")
            },
        );
        item("Last closed journal", file(&t.last_closed, now, false));
        out.push_str("</dl></section>");
    }

    // The store.
    let st = &s.store;
    let _ = write!(
        out,
        "<section id=\"store\"><h2>Store</h2><div class=\"bar\" role=\"img\" aria-label=\"{pct:.1} % of the capacity used\">\
         <div style=\"width:{width:.1}%\" class=\"{bar}\"></div></div><dl>",
        pct = st.used_percent,
        width = st.used_percent.clamp(0.0, 100.0),
        bar = if st.full || st.used_percent >= 90.0 {
            "alarm"
        } else if st.used_percent >= 50.0 {
            "warn"
        } else {
            "ok"
        },
    );
    let mut item = |k: &str, v: String| {
        let _ = write!(out, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    item("Records held", number(st.records));
    item(
        "Waiting for delivery",
        format!(
            "{} of {} ({:.1} %){}",
            number(st.waiting),
            number(st.capacity),
            st.used_percent,
            if st.full {
                " <b class=\"alarm\">full</b>"
            } else {
                ""
            }
        ),
    );
    if st.retained > 0 {
        item("Retained (store.retain)", number(st.retained));
    }
    item(
        "On disk",
        st.bytes
            .map_or("<span class=\"muted\">unknown</span>".into(), bytes_words),
    );
    item(
        "Disk free",
        format!(
            "{} (reserve {}){}",
            st.disk_free_bytes.map_or("unknown".into(), bytes_words),
            bytes_words(st.reserve_bytes),
            if st.disk_low {
                " <b class=\"alarm\">below the reserve</b>"
            } else {
                ""
            }
        ),
    );
    out.push_str("</dl></section>");
    out.push_str(
        "<footer><a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a> · \
         <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></footer></div>",
    );
    let _ = writeln!(out, "<script>{}</script></body></html>", script());
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--alarm:#cf222e;--muted:#6e7781;--line:#d0d7de;--bg:#fff;--fg:#1f2328;--card:#f6f8fa}\
@media (prefers-color-scheme:dark){:root{--ok:#3fb950;--warn:#d29922;--alarm:#f85149;--muted:#8b949e;--line:#30363d;--bg:#0d1117;--fg:#e6edf3;--card:#161b22}}\
*{box-sizing:border-box}body{margin:0;padding:12px 16px 24px;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:var(--bg);color:var(--fg)}\
h1{font-size:22px;margin:0}h1 .gw{font-weight:400}h2{font-size:17px;margin:20px 0 8px}.sub{margin:2px 0 0;color:var(--muted)}\
#alarms{border-radius:8px;padding:4px 14px 10px;margin-top:14px}#alarms h2{margin-top:8px}\
#alarms.healthy{background:color-mix(in srgb,var(--ok) 12%,transparent);border:1px solid var(--ok)}\
#alarms.alarming{background:color-mix(in srgb,var(--alarm) 12%,transparent);border:2px solid var(--alarm)}\
#alarms ul{margin:0;padding-left:20px}#alarms li{font-weight:600;margin:4px 0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:6px 10px 6px 0;border-bottom:1px solid var(--line)}\
th{font-size:13px;color:var(--muted);font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums}td.name{font-weight:600}\
.ok{color:var(--ok)}.warn{color:var(--warn)}.alarm{color:var(--alarm)}.muted{color:var(--muted);font-size:13px}.file{font-family:ui-monospace,monospace;font-size:13px;word-break:break-all}\
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:8px;margin:0}dl div{background:var(--card);border-radius:6px;padding:8px 10px}dt{font-size:13px;color:var(--muted)}dd{margin:0;font-weight:600}\
.bar{height:10px;background:var(--card);border:1px solid var(--line);border-radius:5px;overflow:hidden;margin-bottom:10px}.bar div{height:100%;min-width:2px}.bar .ok{background:var(--ok)}.bar .warn{background:var(--warn)}.bar .alarm{background:var(--alarm)}\
footer{margin-top:22px;color:var(--muted);font-size:13px}footer a{color:inherit}\
html[data-live=unreachable] .live{color:var(--alarm);font-weight:600}\
@media (max-width:720px){thead{display:none}table,tbody,tr,td{display:block;width:100%}tr{background:var(--card);border-radius:8px;margin:0 0 10px;padding:6px 12px}\
td{border:0;padding:3px 0;display:grid;grid-template-columns:8.5em 1fr;text-align:left}td::before{content:attr(data-label);color:var(--muted);font-size:13px}td.n{text-align:left}}";

fn script() -> String {
    format!(
        "(function(){{\
var root=document.documentElement,offset=0;\
function words(ms){{ms=Math.max(0,ms);if(ms<1000)return Math.round(ms)+' ms';var s=Math.floor(ms/1000),d=Math.floor(s/86400),h=Math.floor(s/3600)%24,m=Math.floor(s/60)%60;s=s%60;\
if(!d&&!h&&!m)return s+' s';if(!d&&!h)return s?m+' min '+s+' s':m+' min';if(!d)return h+' h '+m+' min';return d+' d '+h+' h';}}\
function clock(){{offset=Date.now()-Number(document.body.dataset.nowMs||Date.now());}}\
function ages(){{var now=Date.now()-offset;document.querySelectorAll('[data-since-ms]').forEach(function(e){{e.textContent=words(now-Number(e.dataset.sinceMs));}});}}\
function refresh(){{fetch(location.pathname,{{cache:'no-store'}}).then(function(r){{if(!r.ok)throw new Error(r.status);return r.text();}}).then(function(html){{\
var doc=new DOMParser().parseFromString(html,'text/html'),fresh=doc.getElementById('status');if(!fresh)throw new Error('no status');\
document.getElementById('status').replaceWith(fresh);document.title=doc.title;document.body.dataset.nowMs=doc.body.dataset.nowMs;clock();ages();\
root.dataset.live='ok';root.dataset.refreshes=String(Number(root.dataset.refreshes||0)+1);}}).catch(function(){{root.dataset.live='unreachable';\
var l=document.querySelector('.live');if(l)l.firstChild.textContent='billbox is not answering; last answer ';}});}}\
clock();ages();root.dataset.live='ok';setInterval(ages,1000);setInterval(refresh,{REFRESH_MS});\
}})();"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use billbox_status::snapshot::{AlarmView, PortView, StoreView};

    fn snapshot() -> Snapshot {
        Snapshot {
            gateway: "gw<1>".into(),
            version: "0.1.0".into(),
            now_ms: 1_800_000_000_000,
            started_ms: 1_800_000_000_000 - 65_000,
            ready: true,
            alarms: vec![AlarmView {
                kind: "port_quiet".into(),
                subject: "p".into(),
                text: "Port p has received no record for 2 min.".into(),
            }],
            ports: vec![PortView {
                name: "p".into(),
                link: "TCP listen 127.0.0.1:5101".into(),
                state: "down".into(),
                detail: Some("<script>alert(1)</script>".into()),
                state_since_ms: Some(1_800_000_000_000 - 4000),
                records_today: 12,
                today_since_ms: 0,
                records_total: 1234,
                last_record_ms: None,
                quiet_alarm_s: Some(60),
                quiet: true,
                open_file: None,
                last_closed: None,
                files_backlog: 0,
            }],
            destinations: vec![],
            store: StoreView {
                records: 1,
                retained: 0,
                waiting: 1,
                capacity: 100,
                used_percent: 1.0,
                bytes: Some(4096),
                disk_free_bytes: None,
                reserve_bytes: 64 << 20,
                disk_low: false,
                full: false,
            },
            transactions: None,
        }
    }

    #[test]
    fn text_from_outside_is_escaped() {
        let html = render(&snapshot());
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("billbox <span class=\"gw\">gw&lt;1&gt;</span>"));
    }

    #[test]
    fn the_page_has_no_external_asset() {
        let html = render(&snapshot());
        for outside in ["src=\"http", "href=\"http", "url(", "@import", "//cdn"] {
            assert!(!html.contains(outside), "{outside} in the page");
        }
        assert!(html.contains("1,234"));
        assert!(html.contains("data-quiet=\"true\""));
        assert!(html.contains("Port p has received no record for 2 min."));
    }
}
