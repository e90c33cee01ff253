//! Switching back to the audio device after a fallback to the null device.
//!
//! When the device fails mid-set, `play` carries on on the null device from the same sample (see
//! `crate::play`). From then on, every [`RETRY`] the control loop asks [`SwitchBack::poll`]
//! whether to try the original device again; when the [`DeviceOpener`]'s probe says the device is
//! there, the loop takes the core back from the null device and hands it to the device, which
//! continues at the very sample the null device stopped at. Nothing is tried while a handover is
//! under way (an engine swap after a Link stop), and a device that vanishes again between the
//! probe and the start is simply tried again later.
//!
//! The decisions are sans-IO (time is passed in) and the device is behind a trait, so tests drive
//! them with a fake device that fails and comes back. [`CpalOpener`] is the real device;
//! [`TestDevice`] is the fault-injection hook `LOOPHOLE_TEST_DEVICE` (for tests: the null device
//! under another name, failing and coming back on cue).
//!
//! Thread: Control thread (the probe and the start may block briefly on the device).

use std::time::{Duration, Instant};

use super::AudioBackend;
use super::core::AudioCore;
use super::device::{self, NoDevice, StartError};

/// How often a lost device is tried again.
pub const RETRY: Duration = Duration::from_secs(2);

/// The environment variable that replaces the audio device by a [`TestDevice`] (a test hook).
pub const TEST_DEVICE_ENV: &str = "LOOPHOLE_TEST_DEVICE";

/// Opens the device a performance started on. Thread: control.
pub trait DeviceOpener {
    /// The device's name for messages.
    fn label(&self) -> String;
    /// Whether the device can be opened now, without taking the core: `Err(why)` if not.
    fn probe(&mut self) -> Result<(), String>;
    /// Starts the device with `core` in its callback. On failure the core comes back with the
    /// reason (`None` only if the system kept the callback).
    fn start(&mut self, core: AudioCore) -> Result<AudioBackend, Box<StartError>>;
}

/// What the control loop should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (not on the null device after a failure, or not time yet, or a handover is under
    /// way).
    Wait,
    /// The device is back: hand the core to it now.
    SwitchBack,
    /// It was tried and is still missing, for this reason; the next try is [`RETRY`] later.
    StillMissing(String),
}

/// When to try a lost device again (sans-IO; time is passed in, as time since any fixed origin).
#[derive(Debug, Clone)]
pub struct SwitchBack {
    every: Duration,
    next: Option<Duration>,
    tries: u32,
}

impl SwitchBack {
    /// Tries every `every` once a device is lost.
    pub fn new(every: Duration) -> SwitchBack {
        SwitchBack { every, next: None, tries: 0 }
    }

    /// The device was lost at `now` (the performance is on the null device): the first try is
    /// `every` later.
    pub fn lost(&mut self, now: Duration) {
        self.next = Some(now + self.every);
        self.tries = 0;
    }

    /// Whether a lost device is being waited for.
    pub fn waiting(&self) -> bool {
        self.next.is_some()
    }

    /// Probes made since the device was lost.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Called every control tick: probes `device` when a try is due and no handover is `busy`.
    pub fn poll(&mut self, now: Duration, busy: bool, device: &mut dyn DeviceOpener) -> Decision {
        match self.next {
            Some(next) if now >= next && !busy => {}
            _ => return Decision::Wait,
        }
        self.tries += 1;
        match device.probe() {
            Ok(()) => {
                self.next = None;
                Decision::SwitchBack
            }
            Err(why) => {
                self.next = Some(now + self.every);
                Decision::StillMissing(why)
            }
        }
    }

    /// The device probed fine but could not be started at `now`: keep waiting.
    pub fn start_failed(&mut self, now: Duration) {
        self.next = Some(now + self.every);
    }
}

/// How a [`hand_back`] went.
pub enum Handover {
    /// The device plays, with the core, from the sample the null device stopped at.
    Back(AudioBackend),
    /// The device could not be started; the null device plays on with the core.
    Stayed {
        /// The null device, restarted.
        null: AudioBackend,
        /// Why the device could not be started.
        why: String,
    },
    /// The core was lost on the way (a backend kept it): the caller must carry on with a fresh
    /// engine, for this reason.
    Lost(String),
}

/// Takes the core back from the null device `null` and starts `device` with it, so that the
/// device continues at the very sample the null device stopped at. If the device cannot be
/// started, the null device is restarted with the core. Thread: control; blocks for about a
/// null-device block.
pub fn hand_back(null: AudioBackend, device: &mut dyn DeviceOpener, null_block: usize) -> Handover {
    let Some(core) = null.stop() else {
        return Handover::Lost("the null device did not hand the engine back".into());
    };
    match device.start(core) {
        Ok(back) => Handover::Back(back),
        Err(failed) => {
            let StartError { why: NoDevice(why), core } = *failed;
            let why = format!("could not switch back to {} ({why})", device.label());
            match core.map(|core| AudioBackend::start_null(core, null_block)) {
                Some(Ok(null)) => Handover::Stayed { null, why },
                Some(Err(e)) => Handover::Lost(format!("{why}; the null device did not restart ({e})")),
                None => Handover::Lost(why),
            }
        }
    }
}

/// The cpal device `play` was asked for, at the engine's sample rate.
pub struct CpalOpener {
    /// `--audio NAME`, or the default device.
    pub name: Option<String>,
    /// The engine's sample rate: the device must run at it.
    pub sample_rate: u32,
    /// `--buffer`.
    pub buffer: Option<u32>,
    /// The device's own name as it was found at the start ([`device::DevicePlan::label`]), so
    /// that messages name it as the playing device's do; `None` if it was not found.
    pub found_as: Option<String>,
}

impl DeviceOpener for CpalOpener {
    fn label(&self) -> String {
        match (&self.found_as, &self.name) {
            (Some(n), _) | (None, Some(n)) => format!("audio device '{n}'"),
            (None, None) => "the default audio device".to_string(),
        }
    }

    fn probe(&mut self) -> Result<(), String> {
        device::find(self.name.as_deref(), Some(self.sample_rate), self.buffer).map(|_| ()).map_err(|e| e.0)
    }

    fn start(&mut self, core: AudioCore) -> Result<AudioBackend, Box<StartError>> {
        let plan = match device::find(self.name.as_deref(), Some(self.sample_rate), self.buffer) {
            Ok(plan) => plan,
            Err(why) => return Err(Box::new(StartError { why, core: Some(core) })),
        };
        plan.start(core).map(AudioBackend::Device)
    }
}

/// A test hook, enabled by `LOOPHOLE_TEST_DEVICE="fail_after=S,back_after=S"`: `play` and `demo`
/// (without `--audio null`) play on "the test device" instead of a cpal device. It is the null
/// device (paced in real time) under that name, except that the first one started (with
/// `fail_every_start=1`, every one) reports a failure once it has played `fail_after` seconds, and it cannot be opened again until
/// `back_after` seconds after the hook was read (`back_after` absent: never). So the whole
/// failure path — the handover to the null device, the retries, the switch back — runs on a
/// machine with no sound card.
#[derive(Debug, Clone)]
pub struct TestDevice {
    fail_after: Option<Duration>,
    back_at: Option<Instant>,
    /// `fail_every_start=1`: every start fails `fail_after` after it, not only the first.
    every_start: bool,
    block: usize,
    started: u32,
}

impl TestDevice {
    /// The hook from the environment, if set. A malformed value is an error naming it.
    pub fn from_env(block: usize) -> Result<Option<TestDevice>, String> {
        match std::env::var(TEST_DEVICE_ENV) {
            Ok(v) => TestDevice::parse(&v, block).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Parses `fail_after=S,back_after=S` (either may be left out); the device runs in blocks of
    /// `block` frames.
    pub fn parse(spec: &str, block: usize) -> Result<TestDevice, String> {
        let mut d = TestDevice { fail_after: None, back_at: None, every_start: false, block, started: 0 };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                format!(
                    "{TEST_DEVICE_ENV}: '{part}' is not fail_after=SECONDS, back_after=SECONDS or fail_every_start=0|1"
                )
            };
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let secs: f64 = value.trim().parse().map_err(|_| bad())?;
            // Finite, not negative, and a time this process can reach (`1e300` is refused, not
            // a panic in `Duration` or `Instant` arithmetic).
            let d_secs = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
            let at = Instant::now().checked_add(d_secs).ok_or_else(bad)?;
            match key.trim() {
                "fail_every_start" if secs == 0.0 || secs == 1.0 => d.every_start = secs == 1.0,
                "fail_after" => d.fail_after = Some(d_secs),
                "back_after" => d.back_at = Some(at),
                _ => return Err(bad()),
            }
        }
        Ok(d)
    }
}

impl DeviceOpener for TestDevice {
    fn label(&self) -> String {
        "audio device 'test device'".to_string()
    }

    fn probe(&mut self) -> Result<(), String> {
        if self.started == 0 || self.back_at.is_some_and(|t| Instant::now() >= t) {
            Ok(())
        } else {
            Err(format!("the test device is not back yet ({TEST_DEVICE_ENV})"))
        }
    }

    fn start(&mut self, core: AudioCore) -> Result<AudioBackend, Box<StartError>> {
        if let Err(why) = self.probe() {
            return Err(Box::new(StartError { why: NoDevice(why), core: Some(core) }));
        }
        let fail_at = match self.started {
            // Out of `Instant`'s range: never (parse refuses such values anyway).
            n if n == 0 || self.every_start => self.fail_after.and_then(|d| Instant::now().checked_add(d)),
            _ => None,
        };
        self.started += 1;
        // The null device cannot fail to start except by not spawning a thread: then the core is
        // lost with the thread, as with a device that kept its callback.
        match AudioBackend::start_null(core, self.block) {
            Ok(inner) => Ok(AudioBackend::Test { inner: Box::new(inner), fail_at }),
            Err(e) => {
                Err(Box::new(StartError { why: NoDevice(format!("cannot start the test device ({e})")), core: None }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that is missing over a window of time and comes back (only probes are made).
    struct Flaky {
        missing_until: Duration,
        now: Duration,
        probes: Vec<Duration>,
    }

    impl DeviceOpener for Flaky {
        fn label(&self) -> String {
            "flaky".into()
        }
        fn probe(&mut self) -> Result<(), String> {
            self.probes.push(self.now);
            if self.now >= self.missing_until { Ok(()) } else { Err("unplugged".into()) }
        }
        fn start(&mut self, core: AudioCore) -> Result<AudioBackend, Box<StartError>> {
            Err(Box::new(StartError { why: NoDevice("not in this test".into()), core: Some(core) }))
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_lost_device_is_tried_every_period_and_switched_back_to_once_it_is_there() {
        let mut sb = SwitchBack::new(RETRY);
        let mut dev = Flaky { missing_until: ms(7_000), now: ms(0), probes: Vec::new() };
        // Not lost: never tried.
        for t in (0..3_000).step_by(2) {
            dev.now = ms(t);
            assert_eq!(sb.poll(dev.now, false, &mut dev), Decision::Wait);
        }
        assert!(!sb.waiting());
        sb.lost(ms(3_000));
        let mut decisions = Vec::new();
        for t in (3_000..12_000).step_by(2) {
            dev.now = ms(t);
            match sb.poll(dev.now, false, &mut dev) {
                Decision::Wait => {}
                d => decisions.push((t, d)),
            }
        }
        assert_eq!(dev.probes, vec![ms(5_000), ms(7_000)], "every 2 s from the loss");
        assert_eq!(decisions, vec![(5_000, Decision::StillMissing("unplugged".into())), (7_000, Decision::SwitchBack)]);
        assert!(!sb.waiting(), "back: nothing more to try");
        assert_eq!(sb.tries(), 2);
    }

    #[test]
    fn nothing_is_tried_while_a_handover_is_under_way_and_a_failed_start_is_retried() {
        let mut sb = SwitchBack::new(RETRY);
        let mut dev = Flaky { missing_until: ms(0), now: ms(0), probes: Vec::new() };
        sb.lost(ms(0));
        dev.now = ms(2_500);
        assert_eq!(sb.poll(dev.now, true, &mut dev), Decision::Wait, "busy");
        assert!(dev.probes.is_empty());
        // As soon as the handover is done, the overdue try is made.
        dev.now = ms(2_502);
        assert_eq!(sb.poll(dev.now, false, &mut dev), Decision::SwitchBack);
        // The device vanished again between the probe and the start: wait a period, try again.
        sb.start_failed(ms(2_510));
        assert!(sb.waiting());
        dev.now = ms(4_000);
        assert_eq!(sb.poll(dev.now, false, &mut dev), Decision::Wait);
        dev.now = ms(4_510);
        assert_eq!(sb.poll(dev.now, false, &mut dev), Decision::SwitchBack);
        assert_eq!(dev.probes, vec![ms(2_502), ms(4_510)]);
    }

    /// A device that is there but cannot be started.
    struct Refusing;

    impl DeviceOpener for Refusing {
        fn label(&self) -> String {
            "audio device 'refusing'".into()
        }
        fn probe(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn start(&mut self, core: AudioCore) -> Result<AudioBackend, Box<StartError>> {
            Err(Box::new(StartError { why: NoDevice("busy".into()), core: Some(core) }))
        }
    }

    #[test]
    fn hand_back_moves_the_core_to_the_device_or_back_to_the_null_device_without_losing_a_sample() {
        use std::sync::Arc;

        use loophole_engine::EngineConfig;
        use loophole_engine::model::Session;
        use loophole_engine::time::{Bpm, TempoMap};

        use crate::clock::Transport;

        let session = Arc::new(Session::new("empty", Bpm(120.0)));
        let (_pulse, signal) =
            loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 16 })
                .unwrap();
        let transport = Transport::new();
        let core = AudioCore::new(signal, TempoMap::new(48_000, Bpm(120.0), 4.0), 0, transport.clone());
        let null = AudioBackend::start_null(core, 256).unwrap();
        std::thread::sleep(ms(20));
        // A device that refuses: the null device plays on with the same core.
        let null = match hand_back(null, &mut Refusing, 256) {
            Handover::Stayed { null, why } => {
                assert_eq!(why, "could not switch back to audio device 'refusing' (busy)");
                null
            }
            _ => panic!("expected the null device to carry on"),
        };
        assert!(null.is_null());
        let before = transport.rendered();
        std::thread::sleep(ms(20));
        assert!(transport.rendered() > before, "it plays on");
        // A device that starts: it gets the core, at the sample the null device stopped at.
        let mut device = TestDevice::parse("", 256).unwrap();
        let back = match hand_back(null, &mut device, 256) {
            Handover::Back(back) => back,
            _ => panic!("expected the device"),
        };
        assert_eq!(back.label(), "audio device 'test device'");
        std::thread::sleep(ms(20));
        let core = back.stop().expect("the core comes back");
        // One core all along: its sample counter is every frame rendered on all three backends.
        assert_eq!(core.sample() as u64, transport.rendered());
        assert!(transport.rendered() >= 3 * 256);
    }

    #[test]
    fn the_test_device_hook_parses_and_refuses_nonsense() {
        let d = TestDevice::parse("fail_after=1.5, back_after=4", 256).unwrap();
        assert_eq!(d.fail_after, Some(Duration::from_millis(1_500)));
        assert!(d.back_at.is_some());
        assert!(TestDevice::parse("", 256).unwrap().fail_after.is_none());
        for bad in [
            "fail_after",
            "fail_after=-1",
            "fail_after=x",
            "when=3",
            "fail_after=inf",
            "fail_after=NaN",
            // Beyond what `Duration` and `Instant` hold: an error, not a panic.
            "fail_after=1e300",
            "back_after=1e300",
            "back_after=1e19",
        ] {
            let e = TestDevice::parse(bad, 256).unwrap_err();
            assert!(e.starts_with("LOOPHOLE_TEST_DEVICE: '"), "{e}");
        }
        // Before it has started it can be opened; after, not until back_after.
        let mut d = TestDevice::parse("back_after=3600", 256).unwrap();
        assert!(d.probe().is_ok());
        d.started = 1;
        assert!(d.probe().is_err());
    }
}
