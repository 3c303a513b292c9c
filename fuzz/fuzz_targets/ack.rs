//! The ack parser and packet decoder take any bytes without panicking, and
//! only a 2xx with OK/1 counts as delivered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ack = billbox_wire::parse_ack(data);
    let verdict = billbox_wire::delivery_verdict(200, data);
    assert_eq!(
        verdict.is_delivered(),
        ack.as_ref().is_ok_and(|a| a.is_delivered())
    );
    assert!(!billbox_wire::delivery_verdict(500, data).is_delivered());
    let _ = billbox_wire::decode_packet(data);
});
