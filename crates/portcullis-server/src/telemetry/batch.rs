//! The log writer: lines gathered in memory and written to stderr in batches by one thread,
//! at most [`WINDOW`] after the first line of a batch.
//!
//! A writer thread woken for every line (tracing-appender's non-blocking writer) cost a
//! thread hand-off per request, the largest single cost of the per-call log line; writing
//! from the request's own thread cost a `write(2)` and a wake-up of the reader (the log
//! shipper) per line. Here the thread is woken once per batch, and the reader too.
//!
//! Nothing is dropped while the process runs: when the buffer reaches [`HIGH_WATER`] the
//! line's own thread writes the batch out (waiting, as a blocking writer would, for a slow
//! reader). Batches go out in order. The guard [`init`] returns flushes what is left when
//! dropped (every return from `main`, after the runtime has ended), waiting at most
//! [`FLUSH_TIMEOUT`] for a write in progress: a reader that stopped reading loses the last
//! batch rather than keeping the process from exiting. A process killed outright loses at
//! most the last window.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Longest a line waits in memory.
const WINDOW: Duration = Duration::from_millis(10);
/// A batch this large is written at once by the thread that filled it.
const HIGH_WATER: usize = 256 * 1024;

struct Shared {
    buffer: Mutex<Buffer>,
    /// Signalled when a batch starts (the buffer was empty) and at shutdown.
    started: Condvar,
    /// Where batches go (stderr); held while a batch is taken and written, so batches
    /// arrive in order.
    output: Mutex<Box<dyn std::io::Write + Send>>,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the current batch and writes it; errors (stderr closed) are not reported, as
    /// there is nowhere left to report them.
    fn write_out(&self) {
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut self.lock().bytes);
        if !batch.is_empty() {
            let _ = output.write_all(&batch).and_then(|()| output.flush());
        }
    }
}

/// The `tracing-subscriber` writer: every event's line is appended to the batch.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// One event's writer.
pub struct Line<'a> {
    shared: &'a Shared,
}

impl std::io::Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buffer = self.shared.lock();
            let was_empty = buffer.bytes.is_empty();
            buffer.bytes.extend_from_slice(bytes);
            if was_empty {
                self.shared.started.notify_one();
            }
            // Once closed (or with no thread) nothing waits for a batch.
            buffer.closed || buffer.bytes.len() >= HIGH_WATER
        };
        if full {
            self.shared.write_out();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
        }
    }
}

/// Writes what is left, and stops the thread, when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long the guard waits for the last batch to be written: a reader that stopped
/// reading stderr must not keep the process from exiting.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.started.notify_one();
        let deadline = std::time::Instant::now() + FLUSH_TIMEOUT;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        // The rest, unless a write is stuck on a reader that stopped reading.
        let output = match self.shared.output.try_lock() {
            Ok(output) => Some(output),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut output) = output {
            let batch = std::mem::take(&mut self.shared.lock().bytes);
            let _ = output.write_all(&batch).and_then(|()| output.flush());
        }
    }
}

/// The writer and its guard; the thread starts here. Without a thread (the system refused
/// one) every line is written by its own thread at once.
pub fn init() -> (BatchedStderr, FlushGuard) {
    init_with(Box::new(std::io::stderr()))
}

fn init_with(output: Box<dyn std::io::Write + Send>) -> (BatchedStderr, FlushGuard) {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Buffer::default()),
        started: Condvar::new(),
        output: Mutex::new(output),
    });
    let flusher = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("portcullis-log".to_owned())
        .spawn(move || {
            loop {
                {
                    let mut buffer = flusher.lock();
                    while buffer.bytes.is_empty() && !buffer.closed {
                        buffer = flusher
                            .started
                            .wait(buffer)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    if buffer.closed {
                        return;
                    }
                }
                std::thread::sleep(WINDOW);
                flusher.write_out();
            }
        })
        .ok();
    if thread.is_none() {
        // No thread to wait for: a line is written as soon as it is appended.
        shared.lock().closed = true;
    }
    (
        BatchedStderr {
            shared: Arc::clone(&shared),
        },
        FlushGuard { shared, thread },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(writer: &BatchedStderr, text: &str) {
        writer.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_whole_in_order_within_the_window_and_at_drop() {
        let sink = Sink::default();
        let (writer, guard) = init_with(Box::new(sink.clone()));
        line(&writer, "one\n");
        line(&writer, "two\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sink.text(), "one\ntwo\n");
        // Threads writing at once: every line whole, each thread's lines in its order.
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        line(&writer, &format!("t{t} {i:03} {}\n", "x".repeat(200)));
                    }
                })
            })
            .collect();
        for thread in writers {
            thread.join().unwrap();
        }
        line(&writer, "last\n");
        drop(guard);
        let text = sink.text();
        assert!(text.ends_with("last\n"), "the guard flushes what is left");
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(lines.len(), 2001);
        for t in 0..4 {
            let prefix = format!("t{t} ");
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&prefix))
                .collect();
            assert_eq!(mine.len(), 500);
            for (i, l) in mine.iter().enumerate() {
                assert_eq!(*l, format!("t{t} {i:03} {}", "x".repeat(200)));
            }
        }
        // After the guard, a line is written at once.
        line(&writer, "after\n");
        assert!(sink.text().ends_with("last\nafter\n"));
    }

    #[test]
    fn a_full_batch_is_written_by_the_thread_that_filled_it() {
        let sink = Sink::default();
        let (writer, _guard) = init_with(Box::new(sink.clone()));
        let big = "y".repeat(HIGH_WATER);
        line(&writer, &big);
        assert_eq!(
            sink.text().len(),
            HIGH_WATER,
            "written before the window ends"
        );
    }
}
