//! Bounds on the CEL and Rego of a class (SPEC section 4, "Hostile input is bounded").
//!
//! Both engines parse and analyse recursively: a long left-deep chain (`a.a.a...`,
//! `1 + 1 + ...`) or deep brackets overflow a thread's stack and abort the process,
//! and Rego's compile time doubles with each level of nesting. So every source is
//! first checked by [`check_source`], a linear scan that never recurses: its size,
//! how deep its brackets nest and how long its operator chains grow. Then it is
//! compiled by [`run_bounded`] on a thread of its own, with a stack sized for what
//! passed the scan and a deadline, never on an async worker. (CEL's evaluations, one
//! per probe, run on the kept threads of `engine_pool` instead.)

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// The languages [`check_source`] knows the strings and comments of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    Cel,
    Rego,
}

/// What a source may be, checked before it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceLimits {
    /// Bytes.
    pub max_bytes: usize,
    /// Brackets (`(`, `[`, `{`) open at once.
    pub max_nesting: usize,
    /// Estimated depth of the syntax tree: operators of one expression (`.`, `+`,
    /// `&&`, `!`, ...) plus those of the enclosing ones and the brackets around it.
    /// A comma (and, in Rego, `;` or a line break between statements) starts a
    /// sibling expression.
    pub max_chain: usize,
    /// Names and keywords. In Rego each rule or statement that depends on another
    /// takes at least two, and evaluation recurses along such a dependency chain.
    pub max_names: usize,
}

/// `response.cel`: the published examples are under 100 bytes, nest 2 deep and
/// chain under 10 operators; a long realistic check (9 clauses, macros, ternary)
/// is about 600 bytes, nests 5 deep and chains about 70.
/// Stack of the threads that compile CEL and Rego: their parsers recurse per bracket
/// and per operator, with large frames in a debug build. What passes the limits below
/// needs a few MiB there; the stack is reserved, not touched, beyond what is used.
pub(crate) const COMPILE_STACK: usize = 64 * 1024 * 1024;
/// Wall-clock bound of compiling one CEL expression or Rego policy (milliseconds in
/// practice).
pub(crate) const COMPILE_DEADLINE: Duration = Duration::from_secs(5);

pub(crate) const CEL_LIMITS: SourceLimits = SourceLimits {
    max_bytes: 4096,
    max_nesting: 24,
    max_chain: 192,
    max_names: 2048,
};

/// Rego policies: real generators are under 2 KiB and 200 names, nest 4 deep (a
/// rule body, an object, an array, a call) and chain under 20. Compile time doubles
/// per level of nesting (at 10, a debug build takes 0.4 s) and grows faster than
/// linearly with the statements of a body (500 take 0.3 s, 1,000 over 1 s).
pub(crate) const REGO_LIMITS: SourceLimits = SourceLimits {
    max_bytes: 32 * 1024,
    max_nesting: 10,
    max_chain: 192,
    max_names: 1024,
};

/// Checks `source` against `limits` without parsing it. Also refuses what is
/// lexically ambiguous and a syntax error anyway (an unterminated string, an invalid
/// escape, a string right after a name, an unbalanced bracket), so that the scan
/// sees the same strings and comments as the engine's lexer.
pub(crate) fn check_source(
    source: &str,
    language: Language,
    limits: &SourceLimits,
) -> Result<(), String> {
    if source.len() > limits.max_bytes {
        return Err(format!(
            "too long: {} bytes, at most {} are allowed",
            source.len(),
            limits.max_bytes
        ));
    }
    Scanner {
        src: source.as_bytes(),
        pos: 0,
        language,
        limits,
        frames: vec![Frame::new(0)],
        chain: 0,
        names: 0,
        last_continues: true,
        pending_break: false,
    }
    .run()
    .map_err(|(at, what)| format!("{what} (at {})", line_col(source, at)))
}

/// `line:column` of a byte offset, both from 1 (columns in characters).
fn line_col(source: &str, at: usize) -> String {
    let at = at.min(source.len());
    let before = source.get(..at).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column}")
}

/// One open bracket (the outermost frame stands for the whole source).
struct Frame {
    opener: u8,
    /// Chain of the current expression in these brackets.
    cur: usize,
    /// Longest chain seen in these brackets.
    max: usize,
}

impl Frame {
    fn new(opener: u8) -> Frame {
        Frame {
            opener,
            cur: 0,
            max: 0,
        }
    }
}

type ScanError = (usize, String);

struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    language: Language,
    limits: &'a SourceLimits,
    frames: Vec<Frame>,
    /// Sum of `cur` over the open frames: the estimated depth here.
    chain: usize,
    /// Names and keywords so far.
    names: usize,
    /// The last token lets the expression go on past a line break (an operator, an
    /// opening bracket or a comma, or nothing yet).
    last_continues: bool,
    /// Rego: a line break was seen since the last token.
    pending_break: bool,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn is_operator(b: u8) -> bool {
    matches!(
        b,
        b'.' | b'?' | b'!' | b'-' | b'+' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'&' | b'|'
    )
}

impl Scanner<'_> {
    fn peek(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    fn run(mut self) -> Result<(), ScanError> {
        while let Some(b) = self.peek(0) {
            let start = self.pos;
            match b {
                b'\n' => {
                    self.pending_break = true;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | 0x0c => self.pos += 1,
                b'/' if self.language == Language::Cel && self.peek(1) == Some(b'/') => {
                    self.skip_line()
                }
                b'#' if self.language == Language::Rego => self.skip_line(),
                b'\'' | b'"' if self.language == Language::Cel => {
                    self.token(false)?;
                    self.cel_string(start)?;
                }
                b'"' | b'`' if self.language == Language::Rego => {
                    self.token(false)?;
                    self.rego_string(start)?;
                }
                b'(' | b'[' | b'{' => {
                    self.token(false)?;
                    self.open(b)?;
                    self.last_continues = true;
                    self.pos += 1;
                }
                b')' | b']' | b'}' => {
                    self.token(false)?;
                    self.close(b)?;
                    self.pos += 1;
                }
                b',' | b';' => {
                    self.token(false)?;
                    if b == b',' || self.language == Language::Rego {
                        self.sibling();
                    }
                    self.last_continues = true;
                    self.pos += 1;
                }
                _ if is_operator(b) => {
                    self.token(true)?;
                    self.operator()?;
                    self.last_continues = true;
                    self.pos += 1;
                }
                _ if is_word(b) => self.word()?,
                _ => {
                    // Anything else (`:`, `@`, `\`, ...) adds no depth.
                    self.token(false)?;
                    self.pos += 1;
                }
            }
        }
        Ok(())
    }

    /// A name, keyword or number: counted, and keywords that join expressions act as
    /// operators.
    fn word(&mut self) -> Result<(), ScanError> {
        let end = self.src[self.pos..]
            .iter()
            .position(|&c| !is_word(c))
            .map_or(self.src.len(), |n| self.pos + n);
        let word = &self.src[self.pos..end];
        let keyword = match self.language {
            Language::Cel => word == b"in",
            Language::Rego => matches!(word, b"in" | b"not" | b"with" | b"as"),
        };
        self.token(keyword)?;
        if !word[0].is_ascii_digit() {
            self.names += 1;
            if self.names > self.limits.max_names {
                return Err((
                    self.pos,
                    format!(
                        "too long: more than {} names and keywords",
                        self.limits.max_names
                    ),
                ));
            }
        }
        self.pos = end;
        if keyword {
            self.operator()?;
            self.last_continues = true;
        }
        Ok(())
    }

    /// Before a token: in Rego, a line break between two statements starts a new one
    /// (unless either side of it continues the expression).
    fn token(&mut self, operator: bool) -> Result<(), ScanError> {
        if self.pending_break {
            self.pending_break = false;
            if self.language == Language::Rego && !self.last_continues && !operator {
                self.sibling();
            }
        }
        self.last_continues = false;
        Ok(())
    }

    fn top(&mut self) -> &mut Frame {
        // The outermost frame is never popped (`close` refuses to).
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    fn operator(&mut self) -> Result<(), ScanError> {
        let top = self.top();
        top.cur += 1;
        top.max = top.max.max(top.cur);
        self.chain += 1;
        self.check_chain()
    }

    fn sibling(&mut self) {
        let top = self.top();
        let cur = top.cur;
        top.cur = 0;
        self.chain -= cur;
    }

    fn check_chain(&self) -> Result<(), ScanError> {
        if self.chain > self.limits.max_chain {
            return Err((
                self.pos,
                format!(
                    "operator chain too long: the expression is more than {} operators and brackets deep",
                    self.limits.max_chain
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, opener: u8) -> Result<(), ScanError> {
        if self.frames.len() > self.limits.max_nesting {
            return Err((
                self.pos,
                format!(
                    "brackets nested too deep: more than {} levels",
                    self.limits.max_nesting
                ),
            ));
        }
        self.frames.push(Frame::new(opener));
        Ok(())
    }

    fn close(&mut self, closer: u8) -> Result<(), ScanError> {
        let expected = match closer {
            b')' => b'(',
            b']' => b'[',
            _ => b'{',
        };
        if self.frames.len() < 2 || self.top().opener != expected {
            return Err((
                self.pos,
                format!("syntax error: unbalanced `{}`", closer as char),
            ));
        }
        let Some(child) = self.frames.pop() else {
            return Ok(());
        };
        self.chain -= child.cur;
        let grown = child.max.max(child.cur) + 1;
        let top = self.top();
        top.cur += grown;
        top.max = top.max.max(top.cur);
        self.chain += grown;
        self.check_chain()
    }

    fn skip_line(&mut self) {
        self.pos = self.src[self.pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.src.len(), |n| self.pos + n);
    }

    /// A CEL string or bytes literal starting at the quote at `self.pos`; `start` for
    /// messages. Prefixes: `r`, `b`, `br` in either case.
    fn cel_string(&mut self, start: usize) -> Result<(), ScanError> {
        let word_start = self.src[..self.pos]
            .iter()
            .rposition(|&c| !is_word(c))
            .map_or(0, |n| n + 1);
        let raw = match &self.src[word_start..self.pos] {
            b"" | b"b" | b"B" => false,
            b"r" | b"R" | b"br" | b"bR" | b"Br" | b"BR" => true,
            _ => {
                return Err((
                    start,
                    "syntax error: a string right after a name or number".to_string(),
                ));
            }
        };
        let q = self.src[self.pos];
        let triple = self.peek(1) == Some(q) && self.peek(2) == Some(q);
        self.pos += if triple { 3 } else { 1 };
        loop {
            let Some(b) = self.peek(0) else {
                return Err((start, "syntax error: unterminated string".to_string()));
            };
            if b == q {
                if !triple {
                    self.pos += 1;
                    return Ok(());
                }
                if self.peek(1) == Some(q) && self.peek(2) == Some(q) {
                    self.pos += 3;
                    return Ok(());
                }
                self.pos += 1;
            } else if (b == b'\n' || b == b'\r') && !triple {
                return Err((start, "syntax error: unterminated string".to_string()));
            } else if b == b'\\' && !raw {
                self.cel_escape()?;
            } else {
                self.pos += 1;
            }
        }
    }

    /// A CEL escape sequence at `self.pos` (the backslash).
    fn cel_escape(&mut self) -> Result<(), ScanError> {
        let at = self.pos;
        let digits =
            |s: &Self, n: usize, ok: fn(u8) -> bool| (0..n).all(|i| s.peek(2 + i).is_some_and(ok));
        let len = match self.peek(1) {
            Some(
                b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'"' | b'\'' | b'\\' | b'?' | b'`',
            ) => 2,
            Some(b'x' | b'X') if digits(self, 2, |c| c.is_ascii_hexdigit()) => 4,
            Some(b'u') if digits(self, 4, |c| c.is_ascii_hexdigit()) => 6,
            Some(b'U') if digits(self, 8, |c| c.is_ascii_hexdigit()) => 10,
            Some(b'0'..=b'3') if digits(self, 2, |c| (b'0'..=b'7').contains(&c)) => 4,
            _ => {
                return Err((at, "syntax error: invalid escape sequence".to_string()));
            }
        };
        self.pos += len;
        Ok(())
    }

    /// A Rego string (`"..."` with escapes) or raw string (`` `...` ``).
    fn rego_string(&mut self, start: usize) -> Result<(), ScanError> {
        let q = self.src[self.pos];
        self.pos += 1;
        loop {
            let Some(b) = self.peek(0) else {
                return Err((start, "syntax error: unterminated string".to_string()));
            };
            self.pos += 1;
            if b == q {
                return Ok(());
            }
            if q == b'"' {
                if b == b'\n' {
                    return Err((start, "syntax error: unterminated string".to_string()));
                }
                if b == b'\\' {
                    if self.peek(0).is_none_or(|c| c == b'\n') {
                        return Err((start, "syntax error: unterminated string".to_string()));
                    }
                    self.pos += 1;
                }
            }
        }
    }
}

/// How long to wait for an evaluation bounded by `deadline` inside its thread: a
/// fifth more and 50 ms, so the thread's own error normally arrives first.
pub(crate) fn grace(deadline: Duration) -> Duration {
    deadline
        .saturating_add(deadline / 5)
        .saturating_add(Duration::from_millis(50))
}

/// Runs `f` on a new thread with `stack_size` bytes of stack and waits for it at
/// most `deadline`. On a multi-thread tokio runtime the wait tells the runtime that
/// this worker blocks, so its other tasks move on. A panic in `f` is an error; so is
/// the deadline (the thread is left to finish on its own: callers bound their work so
/// that it ends soon after).
pub(crate) fn run_bounded<T, F>(
    what: &str,
    stack_size: usize,
    deadline: Duration,
    f: F,
) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("engine".to_string())
        .stack_size(stack_size)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| JobFailure::Start(e).describe(what))?;
    let wait = move || rx.recv_timeout(deadline);
    let received = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    };
    match received {
        Ok(value) => Ok(value),
        Err(RecvTimeoutError::Timeout) => Err(JobFailure::Deadline(deadline).describe(what)),
        Err(RecvTimeoutError::Disconnected) => Err(JobFailure::Died.describe(what)),
    }
}

/// Why an engine job off the async workers gave no answer: one wording for
/// [`run_bounded`] and the kept threads of `engine_pool`.
pub(crate) enum JobFailure {
    Start(std::io::Error),
    Deadline(Duration),
    /// It panicked, or its thread went away without an answer.
    Died,
}

impl JobFailure {
    pub(crate) fn describe(&self, what: &str) -> String {
        match self {
            JobFailure::Start(e) => format!("{what}: could not start a thread: {e}"),
            JobFailure::Deadline(deadline) => format!(
                "{what} exceeded its deadline of {} ms",
                deadline.as_millis()
            ),
            JobFailure::Died => format!("{what} failed unexpectedly"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cel(s: &str) -> Result<(), String> {
        check_source(s, Language::Cel, &CEL_LIMITS)
    }

    fn rego(s: &str) -> Result<(), String> {
        check_source(s, Language::Rego, &REGO_LIMITS)
    }

    #[test]
    fn strings_and_comments_hide_brackets_and_operators() {
        let deep = "(".repeat(100);
        assert!(cel(&format!("'{deep}' == \"{deep}\"")).is_ok());
        assert!(cel(&format!("r'\\{deep}' == '''\n{deep}\n'''")).is_ok());
        assert!(cel(&format!("true // {deep}\n")).is_ok());
        assert!(
            rego(&format!(
                "package p\n# {deep}\nx := \"{deep}\"\ny := `\n{deep}`\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn ambiguous_lexing_is_refused() {
        let chain = "+1".repeat(300);
        for s in [
            format!("'\\q{chain}'"),
            format!("'abc\n{chain}'"),
            format!("0xbr'\\'{chain}'"),
            format!("x'{chain}'"),
            format!("'{chain}"),
            "(]".to_string(),
            ")(".to_string(),
        ] {
            assert!(cel(&s).is_err(), "{s}");
        }
        assert!(rego(&format!("package p\nx := \"{chain}\ny := 1\"\n")).is_err());
    }

    #[test]
    fn chains_add_up_through_brackets() {
        let inner = "a".to_string() + &".a".repeat(100);
        assert!(cel(&inner).is_ok());
        assert!(cel(&format!("({inner}){}", ".a".repeat(100))).is_err());
        // Siblings do not add up.
        assert!(cel(&format!("[{inner}, {inner}, {inner}]")).is_ok());
        // Rego statements on their own lines do not either.
        let stmt = format!("  x := {}\n", "1 + ".repeat(90) + "1");
        assert!(rego(&format!("package p\nr if {{\n{}}}\n", stmt.repeat(20))).is_ok());
        // An expression continued over lines does.
        let long = format!("  x := {}\n", "1 +\n".repeat(200) + "1");
        assert!(rego(&format!("package p\nr if {{\n{long}}}\n")).is_err());
        let long = format!("  x := 1{}\n", "\n + 1".repeat(200));
        assert!(rego(&format!("package p\nr if {{\n{long}}}\n")).is_err());
    }

    #[test]
    fn errors_say_where() {
        let e = cel(&format!("true && {}1{}", "[".repeat(30), "]".repeat(30))).unwrap_err();
        assert!(
            e.starts_with("brackets nested too deep: more than 24 levels (at 1:"),
            "{e}"
        );
        let e = cel(&"x".repeat(5000)).unwrap_err();
        assert_eq!(e, "too long: 5000 bytes, at most 4096 are allowed");
    }

    #[test]
    fn a_deadline_and_a_panic_are_errors() {
        let e = run_bounded("sleeping", 64 * 1024, Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2))
        })
        .unwrap_err();
        assert_eq!(e, "sleeping exceeded its deadline of 50 ms");
        let e = run_bounded("panicking", 64 * 1024, Duration::from_secs(5), || {
            panic!("boom")
        })
        .unwrap_err();
        assert_eq!(e, "panicking failed unexpectedly");
        assert_eq!(
            run_bounded("adding", 64 * 1024, Duration::from_secs(5), || 1 + 1),
            Ok(2)
        );
    }

    /// Waiting works from every place the operator and the CLI call it: a task on a
    /// multi-thread runtime (where it must not stall the worker's other tasks),
    /// `block_on` of either flavor, and a blocking thread.
    #[test]
    fn waits_from_any_runtime_context() {
        let add = || run_bounded("adding", 64 * 1024, Duration::from_secs(5), || 2 + 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async move { add() }), Ok(4));
        let on_worker = multi.block_on(async move {
            // One worker: a ticker on it keeps ticking while a task waits.
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            let waited = tokio::spawn(async move {
                run_bounded("sleeping", 64 * 1024, Duration::from_secs(5), || {
                    std::thread::sleep(Duration::from_millis(300))
                })
            })
            .await
            .unwrap();
            ticker.abort();
            (waited, ticks.load(std::sync::atomic::Ordering::Relaxed))
        });
        assert_eq!(on_worker.0, Ok(()));
        assert!(
            on_worker.1 > 10,
            "the worker stalled: {} ticks",
            on_worker.1
        );
        let blocking = multi.block_on(multi.spawn_blocking(add)).unwrap();
        assert_eq!(blocking, Ok(4));
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async move { add() }), Ok(4));
    }
}
