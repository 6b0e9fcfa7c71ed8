//! The tag of one job's events on a stream that carries many jobs
//! (contract §11.2), made once per job rather than once per event.

use std::rc::Rc;

use super::json::escape_json_into;

/// Tags up to this long (an id of 16 characters makes 31 bytes; an
/// `--instance` name adds its own length and 1) are also kept in a block of
/// this size, copied whole (see [`JobTag::push_to`]).
const BLOCK: usize = 64;

/// `"job":"ID","seq":` for one job, the id JSON-escaped: what every event
/// of that job carries inside its JSON object on a multiplexed stream
/// (its own id follows). Made once with the job; each event copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTag {
    /// Shared: the encoder holds the tag of the event it encodes next
    /// (a count, not a copy, per event).
    prefix: Rc<[u8]>,
    /// The prefix and zeros after it, when it fits.
    block: [u8; BLOCK],
}

impl JobTag {
    /// The tag of the job with id `job`.
    pub fn new(job: &str) -> JobTag {
        let mut text = String::with_capacity(job.len() + 16);
        text.push_str("\"job\":\"");
        escape_json_into(&mut text, job);
        text.push_str("\",\"seq\":");
        let mut block = [0; BLOCK];
        if let Some(head) = block.get_mut(..text.len()) {
            head.copy_from_slice(text.as_bytes());
        }
        JobTag {
            prefix: Rc::from(text.into_bytes()),
            block,
        }
    }

    /// Appends the prefix to `out`. One that fits is copied as its whole
    /// block, of a length known when compiled, and `out` cut back to its
    /// end: a few register stores, where a copy of the prefix's own length
    /// calls `memcpy` (callgrind, 64 jobs: about 25 instructions per event
    /// of a multiplexed stream).
    #[inline]
    pub(super) fn push_to(&self, out: &mut Vec<u8>) {
        let len = self.prefix.len();
        if len <= BLOCK {
            let keep = out.len() + len;
            out.extend_from_slice(&self.block);
            out.truncate(keep);
        } else {
            out.extend_from_slice(&self.prefix);
        }
    }

    /// The tag, shared.
    pub(super) fn shared(&self) -> Rc<[u8]> {
        Rc::clone(&self.prefix)
    }
}
