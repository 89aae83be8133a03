//! The incremental parser: [`SseParser`] and what it reports.

use std::ops::Range;

/// The default cap on one event's raw size: 16 MiB.
///
/// Large enough for a streamed image (`b64_json` of a big PNG) and a
/// `response.completed` that repeats a long answer, small enough that a
/// broken upstream cannot make the daemon buffer without limit.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Buffers that grew past this are given back after the event that needed
/// them, so one big event does not pin its memory for the whole stream.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One dispatched event. Borrows the parser's buffers: copy out what you
/// need before the callback returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event` field, `None` when absent or empty (the standard calls
    /// that type `message`; see [`SseEvent::event_type`]).
    pub event: Option<&'a str>,
    /// The `data` lines joined with `\n` (possibly empty: `data:` alone is
    /// an event with empty data).
    pub data: &'a str,
    /// The last event id in effect, `None` when unset or empty. As the
    /// standard says, an `id` persists until another `id` line changes it.
    pub id: Option<&'a str>,
    /// Absolute stream offsets of the event's raw bytes: from the first
    /// byte after the previous blank line (or the stream start) up to and
    /// including the blank line that ended this event. Cutting this range
    /// out of the stream removes exactly this event (with any comment lines
    /// written inside it).
    pub range: Range<u64>,
}

impl SseEvent<'_> {
    /// The event type with the standard's default: `event` or `"message"`.
    pub fn event_type(&self) -> &str {
        self.event.unwrap_or("message")
    }
}

/// What [`SseParser::feed`] reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// A complete event (ended by a blank line, with at least one `data`
    /// line).
    Event(SseEvent<'a>),
    /// A comment line (`:text`), reported as soon as its line is complete,
    /// with one leading space stripped like a field value.
    Comment(&'a str),
    /// A valid `retry` field (only ASCII digits, fits in `u64`): the
    /// reconnection time in milliseconds the server asks for.
    Retry(u64),
    /// The event starting at absolute offset `start` grew past the cap. Its
    /// fields are dropped and the parser skips to the next blank line; the
    /// next event's range starts after that line. Reported once per event.
    Oversized {
        /// Where the oversized event starts in the stream.
        start: u64,
    },
}

/// An incremental SSE parser over arbitrary byte chunks.
///
/// Feed it every chunk of a stream in order with [`feed`](Self::feed), then
/// call [`finish`](Self::finish) at the end of the stream. Items are handed
/// to a callback and borrow the parser's buffers, so nothing is allocated per
/// event once the buffers have grown to the usual event size.
///
/// A blank line that ends in a lone `\r` exactly at the end of a chunk is
/// dispatched when the next chunk arrives (or at [`finish`](Self::finish)):
/// only then is it known whether a `\n` completes the line end, and the
/// event's range must include it. Every other event is reported during the
/// `feed` call that completes it.
#[derive(Debug, Clone)]
pub struct SseParser {
    max_event_bytes: u64,
    /// Bytes fed so far: the absolute offset of the next byte.
    offset: u64,
    /// Where the current (unfinished) block of lines starts.
    block_start: u64,
    /// The incomplete line carried over from earlier chunks.
    line: Vec<u8>,
    /// The incomplete line has at least one byte (also while skipping an
    /// oversized event, when `line` itself is not kept).
    line_pending: bool,
    /// The last byte seen was a `\r` ending a line: a `\n` right after it
    /// belongs to the same line end.
    after_cr: bool,
    /// The blank line that ends the current event ended in a `\r` at the end
    /// of a chunk; dispatch waits for the next byte.
    pending_dispatch: bool,
    /// A field line (kept in `line`) ended in a `\r` at the end of a chunk
    /// exactly at the cap: whether a `\n` follows decides whether the event
    /// is over the cap, so the line waits for the next byte.
    deferred_line: bool,
    /// The current event passed the cap: ignore lines until a blank line.
    skipping: bool,
    /// No line has been completed yet (a leading BOM is dropped).
    first_line: bool,
    event_type: String,
    data: String,
    has_data: bool,
    last_id: String,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default event cap ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> SseParser {
        SseParser::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser whose events may be at most `max` raw bytes (counting their
    /// lines with line ends, not the blank line that ends them). A larger
    /// event is reported as [`SseItem::Oversized`] and skipped.
    pub fn with_max_event_bytes(max: usize) -> SseParser {
        SseParser {
            max_event_bytes: u64::try_from(max).unwrap_or(u64::MAX),
            offset: 0,
            block_start: 0,
            line: Vec::new(),
            line_pending: false,
            after_cr: false,
            pending_dispatch: false,
            deferred_line: false,
            skipping: false,
            first_line: true,
            event_type: String::new(),
            data: String::new(),
            has_data: false,
            last_id: String::new(),
        }
    }

    /// Bytes fed so far (the absolute offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the current, unfinished event starts. Every byte before it
    /// belongs to events (or blank lines and comment blocks) that are
    /// complete and have been reported; a stage that removes events only
    /// has to hold back the bytes from here on.
    pub fn block_start(&self) -> u64 {
        self.block_start
    }

    /// True when the stream so far ends exactly after a blank line (or is
    /// empty), so bytes written next would start a new event. A stream that
    /// stopped mid-line or mid-event needs a line end or a blank line first.
    pub fn is_at_boundary(&self) -> bool {
        self.pending_dispatch || self.block_start == self.offset
    }

    /// Parses the next chunk of the stream, reporting every item it
    /// completes to `on_item`, in order.
    pub fn feed<F>(&mut self, chunk: &[u8], mut on_item: F)
    where
        F: FnMut(SseItem<'_>),
    {
        if chunk.is_empty() {
            return;
        }
        let base = self.offset;
        self.offset += chunk.len() as u64;
        let mut i = 0;
        if self.after_cr {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
            if self.pending_dispatch {
                self.pending_dispatch = false;
                self.end_block(base + i as u64, &mut on_item);
            }
            if self.deferred_line {
                self.complete_deferred(base + i as u64, &mut on_item);
            }
        }
        while i < chunk.len() {
            let rest = &chunk[i..];
            let Some(eol) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.push_partial(rest, self.offset, &mut on_item);
                break;
            };
            let mut next = i + eol + 1;
            let mut cr_at_chunk_end = false;
            if rest[eol] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => cr_at_chunk_end = true,
                }
            }
            if cr_at_chunk_end && self.defers(&rest[..eol], base + next as u64) {
                self.line.extend_from_slice(&rest[..eol]);
                self.line_pending = false;
                self.deferred_line = true;
            } else {
                self.complete_line(
                    &rest[..eol],
                    base + next as u64,
                    cr_at_chunk_end,
                    &mut on_item,
                );
            }
            self.after_cr = cr_at_chunk_end;
            i = next;
        }
    }

    /// Ends the stream: dispatches an event whose final blank line was
    /// waiting for a possible `\n`, and drops an unfinished event (the
    /// standard does not dispatch an event cut off by the end of the
    /// stream). The parser is left at a boundary.
    pub fn finish<F>(&mut self, mut on_item: F)
    where
        F: FnMut(SseItem<'_>),
    {
        if self.deferred_line {
            self.complete_deferred(self.offset, &mut on_item);
        }
        if self.pending_dispatch {
            self.pending_dispatch = false;
            self.end_block(self.offset, &mut on_item);
        }
        self.after_cr = false;
        self.line.clear();
        self.line_pending = false;
        self.reset_event();
        self.skipping = false;
        self.block_start = self.offset;
    }

    /// Bytes of a line whose end is not in this chunk; `pos_after` is the
    /// absolute offset after them.
    fn push_partial<F>(&mut self, bytes: &[u8], pos_after: u64, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        self.line_pending = true;
        if self.skipping {
            return;
        }
        // A first line that is so far only (part of) the BOM may still turn
        // out blank, and blank lines are never over the cap.
        let bom_so_far = self.first_line && bom_prefix(&self.line, bytes);
        if !bom_so_far && pos_after - self.block_start > self.max_event_bytes {
            self.line.clear();
            self.oversized(on_item);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// A line whose end was found: `tail` is its last part (the whole line
    /// unless earlier chunks held its start), `end` the absolute offset
    /// after its line end.
    fn complete_line<F>(&mut self, tail: &[u8], end: u64, cr_at_chunk_end: bool, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        if !self.line_pending {
            self.process_line(tail, end, cr_at_chunk_end, on_item);
            return;
        }
        self.line_pending = false;
        if self.skipping {
            // Not blank (it had bytes before), and its content is dropped.
            self.first_line = false;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(tail);
        self.process_line(&line, end, cr_at_chunk_end, on_item);
        line.clear();
        if line.capacity() > KEEP_CAPACITY {
            line.shrink_to(KEEP_CAPACITY);
        }
        self.line = line;
    }

    /// Whether a line ending in a `\r` at the end of a chunk (`tail` its
    /// last part, `end` the offset after the `\r`) must wait for the next
    /// byte: a field line of an event exactly at the cap, which a `\n`
    /// would put over it. Its bytes (at most the cap) are kept meanwhile.
    fn defers(&self, tail: &[u8], end: u64) -> bool {
        if self.skipping || end - self.block_start != self.max_event_bytes {
            return false;
        }
        let held = if self.line_pending {
            &self.line[..]
        } else {
            &[]
        };
        let blank = (held.is_empty() && tail.is_empty())
            || (self.first_line && held.len() + tail.len() == BOM.len() && bom_prefix(held, tail));
        !blank
    }

    /// Processes the deferred line now that its line end is known to stop
    /// at `end`.
    fn complete_deferred<F>(&mut self, end: u64, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        self.deferred_line = false;
        let mut line = std::mem::take(&mut self.line);
        self.process_line(&line, end, false, on_item);
        line.clear();
        if line.capacity() > KEEP_CAPACITY {
            line.shrink_to(KEEP_CAPACITY);
        }
        self.line = line;
    }

    fn process_line<F>(&mut self, line: &[u8], end: u64, cr_at_chunk_end: bool, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        let mut line = line;
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            if cr_at_chunk_end {
                self.pending_dispatch = true;
            } else {
                self.end_block(end, on_item);
            }
            return;
        }
        if self.skipping {
            return;
        }
        if end - self.block_start > self.max_event_bytes {
            self.oversized(on_item);
            return;
        }
        self.field(line, on_item);
    }

    fn field<F>(&mut self, line: &[u8], on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        if let Some(comment) = line.strip_prefix(b":") {
            on_item(SseItem::Comment(&String::from_utf8_lossy(strip_space(
                comment,
            ))));
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], strip_space(&line[colon + 1..])),
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if !value.contains(&0) => {
                self.last_id.clear();
                self.last_id.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Only ASCII digits, so this is valid UTF-8; overflow makes
                // it no number at all.
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    on_item(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
    }

    /// A blank line ending at `end`: dispatch the event, if any, and start
    /// the next block.
    fn end_block<F>(&mut self, end: u64, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        if !self.skipping && self.has_data {
            on_item(SseItem::Event(SseEvent {
                event: non_empty(&self.event_type),
                data: &self.data,
                id: non_empty(&self.last_id),
                range: self.block_start..end,
            }));
        }
        self.reset_event();
        self.skipping = false;
        self.block_start = end;
    }

    fn oversized<F>(&mut self, on_item: &mut F)
    where
        F: FnMut(SseItem<'_>),
    {
        on_item(SseItem::Oversized {
            start: self.block_start,
        });
        self.reset_event();
        self.skipping = true;
    }

    fn reset_event(&mut self) {
        self.event_type.clear();
        self.data.clear();
        self.has_data = false;
        if self.data.capacity() > KEEP_CAPACITY {
            self.data.shrink_to(KEEP_CAPACITY);
        }
        if self.event_type.capacity() > KEEP_CAPACITY {
            self.event_type.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// The UTF-8 byte-order mark, dropped from the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether `a` followed by `b` is a prefix of the BOM.
fn bom_prefix(a: &[u8], b: &[u8]) -> bool {
    a.len() + b.len() <= BOM.len() && a.iter().chain(b).zip(BOM).all(|(x, y)| x == y)
}

fn strip_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
impl SseParser {
    /// Bytes held in buffers (for memory-bound tests).
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.line.capacity() + self.data.capacity() + self.event_type.capacity()
    }
}
