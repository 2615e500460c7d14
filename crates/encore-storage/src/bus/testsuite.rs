//! The conformance suite of [`EventBus`]: written once, run against every backend.
//! `open(name)` gives a handle on the bus `name` (the same name: the same log), its consumers
//! with an ack wait of [`ACK_WAIT`]; the suite drops a handle before opening its bus again.

use super::{Delivery, EventBus};
use std::time::Duration;

/// The ack wait the suite's buses are opened with.
pub const ACK_WAIT: Duration = Duration::from_secs(1);

type Open<'a> = &'a dyn Fn(&str) -> Box<dyn EventBus>;

const QUICK: Duration = Duration::from_millis(200);

/// Every case, in order; panics on the first that fails, naming it.
pub fn run(open: Open<'_>) {
    delivered_in_order_and_acknowledged_once(open);
    consumers_are_independent_and_filtered(open);
    a_repeated_id_is_appended_once(open);
    unacknowledged_messages_come_back(open);
    the_log_and_acknowledgements_survive_a_reopen(open);
    hostile_names_are_refused(open);
}

fn seqs(got: &[Delivery]) -> Vec<u64> {
    got.iter().map(|d| d.seq).collect()
}

fn delivered_in_order_and_acknowledged_once(open: Open<'_>) {
    let bus = open("order");
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let subject = if i % 2 == 0 {
            "events.playback"
        } else {
            "events.interaction"
        };
        let payload = vec![i; 1 + usize::from(i) * 1000];
        let p = bus.publish(subject, &format!("m{i}"), &payload).unwrap();
        assert!(!p.duplicate);
        sent.push((p.seq, subject, payload));
    }
    assert!(sent.windows(2).all(|w| w[0].0 < w[1].0), "sequences rise");
    let got = bus.fetch("reader", "events.>", 100, QUICK).unwrap();
    assert_eq!(got.len(), 5);
    for (d, (seq, subject, payload)) in got.iter().zip(&sent) {
        assert_eq!(
            (d.seq, d.subject.as_str(), &d.payload),
            (*seq, *subject, payload)
        );
        assert_eq!(d.deliveries, 1);
    }
    assert_eq!(got[2].id, "m2");
    // a batch of at most `max`, the rest held for the next fetch
    for d in &got {
        bus.ack("reader", d.seq).unwrap();
    }
    assert!(
        bus.fetch("reader", "events.>", 100, QUICK)
            .unwrap()
            .is_empty()
    );
    // a fetch waits for what is published meanwhile
    std::thread::scope(|s| {
        let b = &bus;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            b.publish("events.playback", "late", b"late").unwrap();
        });
        let got = bus
            .fetch("reader", "events.>", 10, Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"late");
        bus.ack("reader", got[0].seq).unwrap();
    });
    // acknowledging twice is harmless
    bus.ack("reader", sent[0].0).unwrap();
}

fn consumers_are_independent_and_filtered(open: Open<'_>) {
    let bus = open("consumers");
    for i in 0..6u8 {
        let subject = if i < 4 {
            "events.playback"
        } else {
            "spans.otlp"
        };
        bus.publish(subject, &format!("c{i}"), &[i]).unwrap();
    }
    let first = bus.fetch("a", "events.>", 2, QUICK).unwrap();
    assert_eq!(first.len(), 2, "at most max");
    for d in &first {
        bus.ack("a", d.seq).unwrap();
    }
    let rest = bus.fetch("a", "events.>", 10, QUICK).unwrap();
    assert_eq!(
        rest.iter().map(|d| d.payload[0]).collect::<Vec<_>>(),
        [2, 3]
    );
    // another consumer starts from the beginning and sees only its filter
    let b = bus.fetch("b", "spans.*", 10, QUICK).unwrap();
    assert_eq!(b.iter().map(|d| d.payload[0]).collect::<Vec<_>>(), [4, 5]);
    let all = bus.fetch("c", ">", 10, QUICK).unwrap();
    assert_eq!(all.len(), 6);
    assert!(seqs(&all).windows(2).all(|w| w[0] < w[1]));
}

fn a_repeated_id_is_appended_once(open: Open<'_>) {
    let bus = open("dedup");
    let a = bus.publish("events.playback", "batch-1", b"one").unwrap();
    let again = bus.publish("events.playback", "batch-1", b"one").unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, a.seq);
    let b = bus.publish("events.playback", "batch-2", b"two").unwrap();
    assert!(!b.duplicate && b.seq > a.seq);
    let got = bus.fetch("d", "events.>", 10, QUICK).unwrap();
    assert_eq!(
        got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["batch-1", "batch-2"]
    );
}

fn unacknowledged_messages_come_back(open: Open<'_>) {
    let bus = open("redeliver");
    for i in 0..3u8 {
        bus.publish("events.playback", &format!("r{i}"), &[i])
            .unwrap();
    }
    let got = bus.fetch("slow", "events.>", 10, QUICK).unwrap();
    assert_eq!(got.len(), 3);
    bus.ack("slow", got[1].seq).unwrap();
    // out with the consumer: not delivered again before the ack wait
    assert!(bus.fetch("slow", "events.>", 10, QUICK).unwrap().is_empty());
    std::thread::sleep(ACK_WAIT + Duration::from_millis(300));
    let again = bus
        .fetch("slow", "events.>", 10, Duration::from_secs(3))
        .unwrap();
    assert_eq!(seqs(&again), [got[0].seq, got[2].seq]);
    assert!(again.iter().all(|d| d.deliveries == 2), "{again:?}");
    for d in &again {
        bus.ack("slow", d.seq).unwrap();
    }
    assert!(bus.fetch("slow", "events.>", 10, QUICK).unwrap().is_empty());
}

fn the_log_and_acknowledgements_survive_a_reopen(open: Open<'_>) {
    let bus = open("reopen");
    for i in 0..4u8 {
        bus.publish("events.playback", &format!("p{i}"), &[i])
            .unwrap();
    }
    let got = bus.fetch("keeper", "events.>", 10, QUICK).unwrap();
    bus.ack("keeper", got[0].seq).unwrap();
    bus.ack("keeper", got[2].seq).unwrap();
    drop(bus);
    let bus = open("reopen");
    // what was acknowledged stays acknowledged; the rest comes (back) once the ack wait of
    // the first handle's deliveries is over
    std::thread::sleep(ACK_WAIT + Duration::from_millis(300));
    let again = bus
        .fetch("keeper", "events.>", 10, Duration::from_secs(3))
        .unwrap();
    assert_eq!(seqs(&again), [got[1].seq, got[3].seq]);
    // the deduplication window outlives the handle too
    assert!(
        bus.publish("events.playback", "p0", &[0])
            .unwrap()
            .duplicate
    );
}

fn hostile_names_are_refused(open: Open<'_>) {
    let bus = open("hostile");
    for subject in [
        "",
        "a..b",
        "events.>",
        "events.*",
        "a b",
        "x.",
        &"s".repeat(300),
    ] {
        assert!(bus.publish(subject, "id", b"x").is_err(), "{subject:?}");
    }
    for id in ["", "a b", "a/b", &"i".repeat(200)] {
        assert!(bus.publish("events.playback", id, b"x").is_err(), "{id:?}");
    }
    for consumer in ["", "a b", "a>b", &"c".repeat(200)] {
        assert!(bus.fetch(consumer, ">", 1, QUICK).is_err(), "{consumer:?}");
    }
    for filter in ["", "a..b", "events.>.x"] {
        assert!(bus.fetch("ok", filter, 1, QUICK).is_err(), "{filter:?}");
    }
    // a payload of a megabyte goes through whole
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    bus.publish("events.playback", "big", &big).unwrap();
    let got = bus.fetch("big", "events.>", 1, QUICK).unwrap();
    assert_eq!(got[0].payload, big);
}
