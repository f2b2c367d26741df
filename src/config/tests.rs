//! Unit tests of the config: defaults, every refusal naming its key, the fixed choices' spellings and the
//! pin checks. They parse text; the only file they touch is one that does not exist.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::devices::contacts::Contact;
use crate::policy::decide::FaceIntent;
use crate::protect::keys::root::{OtpSource, RootKind};

fn parse(text: &str) -> Result<Config, ConfigError> {
    RawConfig::parse(text, Path::new("test.toml"))?.validate()
}

/// The message with its sources, as `main` prints it (`{:#}`).
fn chain(err: &ConfigError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

#[test]
fn a_compound_section_is_validated_and_names_the_devices_in_the_notice() {
    let base = "[store]\nmaster_key = \"/k/master.key\"\n[compound]\nname = \"maple-court\"\ngate = \"gate-b\"\n";
    let c = parse(&format!("{base}broker = \"tls://gate-a.local:4222\"\ngates = [\"gate-a\", \"gate-b\"]\n")).unwrap();
    let compound = c.compound.unwrap();
    assert_eq!(compound.link.offline_limit, Duration::from_secs(300));
    assert_eq!(compound.link.cert, PathBuf::from("/k/compound/gate.pem"));
    assert_eq!(compound.secret, PathBuf::from("/k/compound/compound.key"));
    assert_eq!(c.portal.templates_held_on, "the 2 gates of this compound (gate-a, gate-b)");
    assert!(parse("").unwrap().compound.is_none());
    for (extra, key) in [
        ("broker = \"nats://gate-a:4222\"\n", "compound.broker"),
        ("broker = \"tls://a:4222\"\ngates = [\"gate-a\"]\n", "compound.gates"),
        ("broker = \"tls://a:4222\"\noffline_limit = \"1s\"\n", "compound.offline_limit"),
        ("broker = \"tls://a:4222\"\noffline_limit = \"soon\"\n", "compound.offline_limit"),
    ] {
        let err = parse(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    let err = parse("[compound]\nname = \"Maple Court\"\ngate = \"a\"\nbroker = \"tls://a:1\"\n").unwrap_err();
    assert!(err.to_string().contains("compound.name"), "{err}");
}

const CALIBRATION: &str = "[matching.calibration]\nanchor = 0.356\nrate = 1e-3\nscale = 0.0393\nshape = -0.118\n";

#[test]
fn a_calibration_from_facegate_calibrate_is_the_registrys() {
    use crate::policy::calibration::Calibration;
    let custom = CALIBRATION.replace("0.356", "0.4");
    let policy = parse(&custom).unwrap().registry;
    assert_eq!(policy.calibration, Calibration { anchor: 0.4, rate: 1e-3, scale: 0.0393, shape: -0.118 });
    assert_eq!(parse("").unwrap().registry.calibration, Calibration::SFACE);
    for (from, to, key) in [
        ("0.0393", "0", "matching.calibration.scale"),
        ("1e-3", "0.5", "matching.calibration.rate"),
        ("-0.118", "-3", "matching.calibration.shape"),
        ("0.356", "1.2", "matching.calibration.anchor"),
    ] {
        let err = parse(&CALIBRATION.replace(from, to)).unwrap_err();
        assert!(err.to_string().contains(key), "{from} -> {to}: {}", chain(&err));
    }
    let err = parse(&format!("{CALIBRATION}tail = 1\n")).unwrap_err();
    assert!(chain(&err).contains("tail"), "{}", chain(&err));
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.match_threshold.get(), DEFAULT_MATCH_THRESHOLD);
    assert!(matches!(c.capture, CaptureConfig::Replay { .. }));
    assert_eq!(c.hardware.backend, Backend::Simulated);
    assert_eq!(c.hardware.relay_bcm.get(), 17);
    assert_eq!((&c.hardware.keypad, &c.hardware.scanner), (&KeypadConfig::None, &ScannerConfig::None));
}

#[test]
fn bad_values_name_their_key() {
    for (text, key) in [
        ("[matching]\nthreshold = 1.5", "matching.threshold"),
        ("[detector]\nscore_threshold = 0", "detector.score_threshold"),
        ("[capture]\nsource = \"ftp\"", "capture.source"),
        ("[capture]\nsource = 3", "capture.source"),
        ("[capture]\nfps = -3", "capture.fps"),
        ("[retention]\nmax_unused_days = 2000", "retention.max_unused_days"),
        ("[matching]\ntarget_fpir = 0.5", "matching.target_fpir"),
        ("[pin]\nfailures_per_hour = 0", "pin.failures_per_hour"),
        ("[pin]\nfailures_per_hour = 51", "pin.failures_per_hour"),
        ("[pin]\nfailures_per_day = 201", "pin.failures_per_day"),
        ("[pin]\nfailures_per_hour = 30\nfailures_per_day = 20", "pin.failures_per_day"),
        ("[portal]\ncount_noise_epsilon = 0.0", "portal.count_noise_epsilon"),
        ("[portal]\ncount_noise_epsilon = 20.0", "portal.count_noise_epsilon"),
        ("[portal]\nmetrics_token = \"short\"", "portal.metrics_token"),
        ("[portal]\nmetrics_token = \"thirty-two characters with spaces!!\"", "portal.metrics_token"),
        ("[enrolment]\nframes = 0", "enrolment.frames"),
        ("[gate]\npulse_ms = 20000\nmax_open_ms = 10000", "gate.max_open_ms"),
        ("[gate]\nagreement_required = 4", "gate.agreement_required"),
        ("[hardware]\nbackend = \"arduino\"", "hardware.backend"),
        ("[hardware]\nbackend = \"GPIO\"", "hardware.backend"),
        ("[hardware]\nrelay_bcm = 40", "hardware.relay_bcm"),
        ("[hardware]\nkeypad = \"usb\"", "hardware.keypad_device"),
        ("[hardware]\nkeypad = \"ps2\"", "hardware.keypad"),
        ("[hardware]\nkeypad = \"matrix\"\nkeypad_cols = [12, 16, 28]", "hardware.keypad_cols"),
        ("[hardware]\nscanner = \"usb\"", "hardware.scanner_device"),
        ("[hardware]\nscanner = \"matrix\"", "hardware.scanner"),
        ("[hardware.contacts]\nexit_button = 17", "hardware.contacts.exit_button"),
        ("[hardware.lights]\ngreen = 30", "hardware.lights.green"),
        ("[hardware.lights]\nbuzzer = -1", "hardware.lights.buzzer"),
        ("[hardware.wiegand]\nd1 = 99", "hardware.wiegand.d1"),
        ("[gate]\nintent = \"cctv\"", "gate.intent"),
        ("[liveness]\nthreshold = 1.0", "liveness.threshold"),
        ("[hardware.wiegand]\nface_card = 2", "hardware.wiegand"),
        ("[gate]\nface_window_ms = 10", "gate.face_window_ms"),
        ("[gate]\ndoor_held_alarm_s = 1", "gate.door_held_alarm_s"),
        ("[keys]\nroot = \"hsm\"", "keys.root"),
        ("[audit]\nsystem_places = \"yes\"", "audit.system_places"),
        ("[keys]\ntpm_pcrs = [0, 24]", "keys.tpm_pcrs"),
        ("[keys]\nroot = \"pi-otp\"\notp_stand_in = \"/b\"\n[hardware]\nbackend = \"gpio\"", "keys.otp_stand_in"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {}", chain(&err));
    }
    let err = parse("[matching]\nthreshhold = 0.4").unwrap_err();
    assert!(chain(&err).contains("threshhold"), "{}", chain(&err));
}

#[test]
fn refusals_by_the_parser_keep_its_error_and_say_what_is_allowed() {
    let err = parse("[hardware]\nbackend = \"arduino\"").unwrap_err();
    assert!(matches!(&err, ConfigError::Parse { key, .. } if key == "hardware.backend"), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("`simulated`") && text.contains("`gpio`"), "{text}");
    let err = parse("[hardware]\nrelay_bcm = 28").unwrap_err();
    assert!(err.source().is_some_and(|s| s.to_string().contains("0..=27")), "{}", chain(&err));
    let err = parse("[gate\n").unwrap_err();
    assert!(matches!(&err, ConfigError::Parse { key, .. } if key.is_empty()), "{err:?}");
    assert!(err.to_string().contains("not valid TOML"), "{err}");
    let err = RawConfig::read(Path::new("/nonexistent/facegate.toml")).unwrap_err();
    assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()), "{err:?}");
}

#[test]
fn each_fixed_choice_accepts_exactly_its_spellings() {
    let hw = |text: &str| parse(&format!("[hardware]\n{text}")).map(|c| c.hardware);
    assert_eq!(hw("backend = \"gpio\"").unwrap().backend, Backend::Gpio);
    assert_eq!(hw("backend = \"simulated\"").unwrap().backend, Backend::Simulated);
    assert_eq!(hw("keypad = \"none\"").unwrap().keypad, KeypadConfig::None);
    assert_eq!(hw("keypad = \"stdin\"").unwrap().keypad, KeypadConfig::Stdin);
    let usb = hw("keypad = \"usb\"\nkeypad_device = \"/dev/k\"").unwrap().keypad;
    assert_eq!(usb, KeypadConfig::Usb { device: PathBuf::from("/dev/k") });
    let matrix = hw("keypad = \"matrix\"").unwrap().keypad;
    let KeypadConfig::Matrix { rows, cols } = matrix else { panic!("{matrix:?}") };
    assert_eq!((rows.map(BcmPin::get), cols.map(BcmPin::get)), ([5, 6, 13, 19], [12, 16, 20]));
    assert_eq!(hw("scanner = \"none\"").unwrap().scanner, ScannerConfig::None);
    assert_eq!(hw("scanner = \"stdin\"").unwrap().scanner, ScannerConfig::Stdin);
    let usb = hw("scanner = \"usb\"\nscanner_device = \"/dev/s\"").unwrap().scanner;
    assert_eq!(usb, ScannerConfig::Usb { device: PathBuf::from("/dev/s") });
    let capture = |text: &str| parse(&format!("[capture]\n{text}")).unwrap().capture;
    assert_eq!(capture("source = \"camera\"\ncamera_index = 2"), CaptureConfig::Camera { index: 2 });
    assert_eq!(capture("source = \"replay\"\nreplay_dir = \"/r\""), CaptureConfig::Replay { dir: "/r".into() });
    let intent = |text: &str| parse(text).unwrap().gate.intent;
    assert_eq!(intent("[gate]\nintent = \"button\""), FaceIntent::Button);
    assert_eq!(intent("[gate]\nintent = \"presence\""), FaceIntent::Presence);
    assert_eq!(intent("[gate]\nintent = \"always\""), FaceIntent::Always);
    // The default follows the backend: off the Pi there is no face button to press.
    assert_eq!(intent(""), FaceIntent::Always);
    assert_eq!(intent("[hardware]\nbackend = \"gpio\""), FaceIntent::Button);
    let keys = |text: &str| parse(&format!("[keys]\n{text}")).unwrap().keys;
    assert_eq!(keys("").kind, RootKind::File);
    assert_eq!(
        (keys("").tpm_tcti.as_str(), keys("").otp.clone()),
        ("device:/dev/tpmrm0", OtpSource::Firmware { key_id: 1 })
    );
    assert_eq!(keys("root = \"file\"").kind, RootKind::File);
    assert_eq!(keys("root = \"passphrase\"").kind, RootKind::Passphrase);
    let tpm = keys("root = \"tpm\"\ntpm_tcti = \"swtpm:port=2321\"\ntpm_pcrs = [0, 7]");
    assert_eq!(
        (tpm.kind, tpm.tpm_tcti.as_str(), tpm.tpm_pcrs.as_slice()),
        (RootKind::Tpm, "swtpm:port=2321", &[0u8, 7][..])
    );
    let otp = keys("root = \"pi-otp\"\notp_stand_in = \"/b\"");
    assert_eq!((otp.kind, otp.otp), (RootKind::PiOtp, OtpSource::StandIn("/b".into())));
    assert_eq!(keys("root = \"pi-otp\"\notp_key_id = 2").otp, OtpSource::Firmware { key_id: 2 });
    for (text, key) in [
        ("[keys]\nroot = \"TPM\"", "keys.root"),
        ("[keys]\nroot = \"pi_otp\"", "keys.root"),
        ("[gate]\nintent = \"Button\"", "gate.intent"),
        ("[hardware]\nkeypad = \"USB\"", "hardware.keypad"),
        ("[capture]\nsource = \"camera \"", "capture.source"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {}", chain(&err));
    }
}

#[test]
fn a_pin_off_the_header_is_refused_while_parsing() {
    assert_eq!(BcmPin::new(27).map(BcmPin::get), Some(27));
    assert!(BcmPin::new(28).is_none());
    for text in [
        "[hardware]\nrelay_bcm = 28",
        "[hardware]\nkeypad_rows = [5, 6, 13, 40]",
        "[hardware.contacts]\npresence = 255",
        "[hardware.contacts]\ndoor_contact = 256",
        "[hardware.wiegand]\nd0 = 30",
    ] {
        let err = RawConfig::parse(text, Path::new("test.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err:?}");
    }
    let c = parse("[hardware]\nrelay_bcm = 27\n[hardware.lights]\ngreen = 0").unwrap();
    assert_eq!((c.hardware.relay_bcm.get(), c.hardware.lights.green.map(BcmPin::get)), (27, Some(0)));
}

#[test]
fn a_pin_named_twice_is_refused_at_the_second_key_naming_the_first() {
    let matrix = "[hardware]\nkeypad = \"matrix\"\n";
    for (text, key, first) in [
        ("[hardware.lights]\nred = 17".to_owned(), "hardware.lights.red", "hardware.relay_bcm"),
        (
            format!("{matrix}[hardware.contacts]\nface_button = 13"),
            "hardware.contacts.face_button",
            "hardware.keypad_rows",
        ),
        (format!("{matrix}keypad_cols = [12, 16, 12]"), "hardware.keypad_cols", "hardware.keypad_cols"),
        (
            "[hardware.contacts]\npresence = 7\n[hardware.wiegand]".into(),
            "hardware.wiegand.d1",
            "hardware.contacts.presence",
        ),
        ("[hardware.lights]\ngreen = 26\nbuzzer = 26".into(), "hardware.lights.buzzer", "hardware.lights.green"),
    ] {
        match parse(&text) {
            Err(ConfigError::PinReused { key: k, first: f, .. }) => assert_eq!((k, f), (key, first), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let err = parse("[hardware.lights]\nred = 17").unwrap_err().to_string();
    assert!(err.contains("hardware.lights.red") && err.contains("hardware.relay_bcm"), "{err}");
    // The pins of a keypad that is not a matrix are not wired, so they collide with nothing.
    assert!(parse("[hardware]\nkeypad_rows = [17, 6, 13, 19]").is_ok());
    let c = parse("[hardware.contacts]\nexit_button = 22\npresence = 25\npresence_active_low = true").unwrap();
    let wired: Vec<_> = c.hardware.contacts.iter().map(|w| (w.contact, w.pin.get(), w.active_low)).collect();
    assert_eq!(wired, [(Contact::ExitButton, 22, true), (Contact::Presence, 25, true)]);
}

#[test]
fn the_frame_rate_and_live_threshold_are_held_once() {
    let c = parse("[capture]\nfps = 7.5\n[liveness]\nthreshold = 0.3").unwrap();
    assert_eq!((c.fps(), c.gate.fps), (7.5, 7.5));
    assert_eq!((c.live_threshold(), c.gate.live_threshold), (0.3, Some(0.3)));
}
