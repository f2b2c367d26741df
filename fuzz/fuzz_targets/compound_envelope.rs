//! Compound envelopes (`CompoundKeys::open`): what the broker delivers to a gate. Two senders: one without
//! the compound key (any bytes on a subject: framing, epoch, the seal) and one holding it (a stolen gate's
//! key: any JSON behind the seal, sealed with the fuzzing-only hook). Either way an announcement or an error,
//! never a panic; what opens stands on its own subject and seals and opens again (a gate re-announces and
//! relays what it takes).
#![no_main]

use std::sync::LazyLock;

use facegate::compound::CompoundKeys;
use facegate::protect::AeadKey;
use libfuzzer_sys::fuzz_target;

const COMPOUND: &str = "maple-court";

static KEYS: LazyLock<CompoundKeys> = LazyLock::new(|| CompoundKeys::derive(&AeadKey::from_bytes([9; 32]), COMPOUND));

/// One subject of each kind a gate reads.
static SUBJECTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    vec![
        KEYS.resident_subject("gate-a", "r-1"),
        KEYS.counts_subject("gate-a"),
        format!("facegate.{COMPOUND}.gate-a.member"),
        format!("facegate.{COMPOUND}.gate-a.renewal.1"),
        format!("facegate.{COMPOUND}.gate-a.grant.gate-b"),
        format!("facegate.{COMPOUND}.gate-b.member"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let [mode, which, body @ ..] = data else { return };
    let subject = &SUBJECTS[usize::from(*which) % SUBJECTS.len()];
    let payload =
        if mode & 1 == 0 { body.to_vec() } else { KEYS.seal_plaintext(subject, 0, body).expect("epoch 0 is held") };
    let Ok((epoch, announcement)) = KEYS.open(subject, &payload) else { return };
    assert_eq!(&KEYS.subject_of(&announcement), subject, "an announcement opened on another's subject");
    let (again, sealed) = KEYS.seal_under(epoch, &announcement).expect("what opened seals again");
    assert_eq!(&again, subject);
    let (reopened, _) = KEYS.open(&again, &sealed).expect("what was sealed again opens");
    assert_eq!(reopened, epoch);
});
