//! `[store] retain`: records every consumer is done with stay in the store
//! for a while (for replay and TCP feed clients that come back), then go.

use std::time::Duration;

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::receiver::Receiver;
use billbox_testkit::*;

fn held(bb: &Billbox, what: &str) -> Option<f64> {
    metric(&bb.metrics(), &format!("{what}{{port=\"p\"}}"))
}

/// With `retain` the filed and delivered records stay (counted as retained,
/// not against the capacity) until they are older than `retain`.
#[test]
fn delivered_records_stay_for_retain_then_go() {
    let site = Site::new();
    let received = site.dir.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let receiver = Receiver::start_in(&received, true, &[]);
    let config = site.config(&format!(
        "[store]\nretain = \"4s\"\n\n\
         [[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\nbilling_records = 5\nbilling_timeout = 0\n\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"50ms\"\n",
        receiver.url("http")
    ));
    let bb = Billbox::start(&config);
    let mut pbx = TcpPbx::connect(bb.listen_addr("p")).unwrap();
    for i in 1..=20 {
        pbx.send(format!("call {i}\n").as_bytes()).unwrap();
    }
    // Filed and delivered: every consumer is done.
    wait_until(Duration::from_secs(20), || {
        let m = bb.metrics();
        let done = |d: &str| {
            metric(
                &m,
                &format!("billbox_done_sequence{{destination=\"{d}\",port=\"p\"}}"),
            )
        };
        (done("delivery") == Some(20.0) && done("files") == Some(20.0)).then_some(())
    })
    .expect("all 20 filed and delivered");
    // Still held, all of them retained; the capacity's backlog is empty.
    assert_eq!(held(&bb, "billbox_store_held_records"), Some(20.0));
    assert_eq!(held(&bb, "billbox_store_retained_records"), Some(20.0));
    let backlog = metric(
        &bb.metrics(),
        "billbox_backlog_records{destination=\"delivery\",port=\"p\"}",
    );
    assert_eq!(backlog, Some(0.0));
    // Older than retain: removed (checked every second here).
    wait_until(Duration::from_secs(20), || {
        (held(&bb, "billbox_store_held_records") == Some(0.0)).then_some(())
    })
    .expect("the retained records go once older than retain");
    assert_eq!(held(&bb, "billbox_store_retained_records"), Some(0.0));
    assert_eq!(bb.terminate(), Some(0));
}

/// Without `retain` (the default) done records go at once, as always.
#[test]
fn without_retain_done_records_go_at_once() {
    let site = Site::new();
    let config = site.config(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\nbilling_records = 5\nbilling_timeout = 0\n",
    );
    let bb = Billbox::start(&config);
    let mut pbx = TcpPbx::connect(bb.listen_addr("p")).unwrap();
    for i in 1..=20 {
        pbx.send(format!("call {i}\n").as_bytes()).unwrap();
    }
    wait_until(Duration::from_secs(20), || {
        (held(&bb, "billbox_store_held_records") == Some(0.0)
            && metric(
                &bb.metrics(),
                "billbox_done_sequence{destination=\"files\",port=\"p\"}",
            ) == Some(20.0))
        .then_some(())
    })
    .expect("filed and removed");
    assert_eq!(bb.terminate(), Some(0));
}
