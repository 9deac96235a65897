//! One direction of a byte stream that spawnd moves itself (a redirect's
//! two directions, an echo connection's one), between non-blocking
//! sockets watched edge-triggered.
//!
//! - **Spliced** while a flow moves bulk: `splice(2)` from the sender into
//!   a pipe, then from the pipe into the receiver, so the bytes never enter
//!   user space. A flow takes a pipe from the loop's pool only for the
//!   bytes in flight and gives it back as soon as the receiver took them
//!   all, so an idle flow holds no pipe and a pool of a few pipes serves
//!   every busy one.
//! - **Copied** through the loop's one scratch buffer otherwise: small
//!   exchanges (a copy read that comes back short needs no call to learn
//!   the socket is drained, where a splice read needs one more; measured in
//!   docs/benchmark/relay.md), and wherever splice cannot be used: turned
//!   off (`splice: false` in spawnd.yaml), refused by a socket (`EINVAL`: a
//!   socket type without splice support, a future TLS side), or no pipe to
//!   be had (a full descriptor table). What the receiver did not take is
//!   kept in a buffer of the flow's own, made then and freed once written.
//!
//! A flow starts copying; a read that brings at least 4 KiB makes the next
//! one splice, a read that brings less makes it copy. Pooled pipes are
//! asked to hold 1 MiB (the kernel's default is 64 KiB): sixteen times
//! fewer calls per byte, measured faster and cheaper than 64 KiB and
//! 256 KiB pipes (docs/benchmark/relay.md); where the kernel refuses (a
//! user past its pipe budget), a smaller pipe serves.
//!
//! Either way at most one read's worth is held per direction, and nothing
//! more is read until the receiver took it: a receiver that stops reading
//! stops the sender (bounded memory, TCP back-pressure).
//!
//! **System calls.** A new socket is tried at once (`Ready::hopeful`): on
//! loopback a client's first bytes, and a redirect's finished connect, are
//! usually there before epoll could say so, and a wrong guess costs one
//! EAGAIN. Then each side remembers what epoll last said
//! (`readable`, `writable`) and what the last call found, so a flow calls
//! the kernel only when it can move something: a short copy read means the
//! socket is drained (a stream socket returns less than asked only when
//! its queue is empty; unless the peer's end was reported with the bytes,
//! which the next read returns), a short or refused write that the receiver is
//! full; the edge that ends either state comes as an event. A splice read
//! can be short because the pipe ran out of slots, so splice keeps reading
//! until `EAGAIN`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::SpliceFFlags;
use nix::sys::socket::{self, MsgFlags};

/// One read's worth: what the scratch buffer and a pipe hold.
pub(super) const CHUNK: usize = 64 * 1024;
/// A read of at least this much is bulk: the next read splices; a read of
/// less, the next one copies. Below it, the call a splice needs to learn
/// the socket is drained costs more than copying the bytes twice.
const BULK: usize = 4 * 1024;
/// What a pooled pipe is asked to hold (the kernel's default is 64 KiB,
/// its most for an unprivileged user 1 MiB, `fs.pipe-max-size`): a spliced
/// flow moves up to this much per pair of calls. Measured against 256 KiB
/// and 64 KiB in docs/benchmark/relay.md.
const PIPE_SIZE: usize = 1024 * 1024;
/// Idle pipes kept for the next busy flow; more are closed. Each costs two
/// descriptors and a little kernel memory, no data; but the kernel counts a
/// pipe's size against its user's pipe budget (`fs.pipe-user-pages-soft`,
/// 64 MiB, which root is not held to), so the pool keeps a quarter of it at
/// most.
const POOL_IDLE_MAX: usize = 16;

/// What epoll said about one socket, and what the last call found. A new
/// socket starts with a guess (`hopeful`, `can_write`) or with nothing:
/// registering a socket with epoll reports what it is ready for at once.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ready {
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// An error or hang-up was reported (a connect that failed, say).
    pub(super) trouble: bool,
    /// The peer's end (or an error) was reported: a short read no longer
    /// means the socket is drained, since the end that follows the bytes
    /// was reported with them and no new edge will come for it.
    pub(super) read_closed: bool,
    /// epoll itself said writable (not a guess): for a connecting socket,
    /// the connect has finished.
    pub(super) reported_writable: bool,
}

impl Ready {
    /// Notes an event. An error or hang-up makes both ways worth a try: the
    /// call then reports it.
    pub(super) fn note(&mut self, event: &mio::event::Event) {
        let trouble = event.is_error() || event.is_write_closed();
        self.readable |= event.is_readable() || event.is_read_closed() || trouble;
        self.writable |= event.is_writable() || trouble;
        self.trouble |= trouble;
        self.read_closed |= event.is_read_closed() || trouble;
        self.reported_writable |= event.is_writable();
    }

    /// A new socket, tried at once for both ways before epoll says
    /// anything (on loopback a client's first bytes and a connect's end
    /// are often there already; a guess that is wrong costs one EAGAIN).
    pub(super) fn hopeful() -> Ready {
        Ready {
            readable: true,
            ..Ready::can_write()
        }
    }

    /// A new socket, tried at once for writing only.
    pub(super) fn can_write() -> Ready {
        Ready {
            writable: true,
            ..Ready::default()
        }
    }
}

/// A pipe the bytes of a spliced flow pass through.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// The loop's means of moving bytes: the pipe pool and the scratch buffer,
/// shared by every flow (one flow moves at a time).
pub(super) struct Movers {
    idle_pipes: Vec<Pipe>,
    scratch: Vec<u8>,
    /// `splice: false` in spawnd.yaml copies everything.
    pub(super) splice: bool,
}

impl Default for Movers {
    fn default() -> Self {
        Movers::new(true)
    }
}

impl Movers {
    pub(super) fn new(splice: bool) -> Movers {
        Movers {
            idle_pipes: Vec::new(),
            scratch: Vec::new(),
            splice,
        }
    }

    /// A pipe from the pool, or a new one (kept above the descriptor slots,
    /// like everything spawnd keeps). `None` if none can be made now.
    fn pipe(&mut self) -> Option<Pipe> {
        if let Some(pipe) = self.idle_pipes.pop() {
            return Some(pipe);
        }
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags).ok()?;
        // Past the per-user pipe budget the kernel refuses a larger pipe
        // (and past its soft limit makes new pipes smaller than the
        // default): a smaller pipe still works, with more calls per byte.
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
        let read = crate::daemon::slots::above(read).ok()?;
        let write = crate::daemon::slots::above(write).ok()?;
        Some(Pipe { read, write })
    }

    /// Takes back an empty pipe.
    fn give_back(&mut self, pipe: Pipe) {
        if self.idle_pipes.len() < POOL_IDLE_MAX {
            self.idle_pipes.push(pipe);
        }
    }

    /// The scratch buffer, made on first use: a spawnd that never copies
    /// has none.
    pub(super) fn scratch(&mut self) -> &mut [u8] {
        if self.scratch.is_empty() {
            self.scratch = vec![0; CHUNK];
        }
        &mut self.scratch
    }

    /// The scratch buffer, lent out whole (put it back with `put_scratch`).
    pub(super) fn take_scratch(&mut self) -> Vec<u8> {
        self.scratch();
        std::mem::take(&mut self.scratch)
    }

    pub(super) fn put_scratch(&mut self, scratch: Vec<u8>) {
        self.scratch = scratch;
    }

    #[cfg(test)]
    fn idle_pipes(&self) -> usize {
        self.idle_pipes.len()
    }
}

/// Bytes a receiver did not take yet, with what is already sent at the
/// front. Empty, it holds no allocation.
#[derive(Default)]
pub(super) struct Outbox {
    data: Vec<u8>,
    sent: usize,
}

impl Outbox {
    pub(super) fn pending(&self) -> usize {
        self.data.len() - self.sent
    }

    /// Writes what `to` takes now; whether it took everything. Gives its
    /// memory back once everything is written.
    pub(super) fn flush(&mut self, to: BorrowedFd<'_>) -> io::Result<(usize, bool)> {
        let written = write_now(to, &self.data[self.sent..])?;
        self.sent += written;
        let all = self.pending() == 0;
        if all {
            *self = Outbox::default();
        }
        Ok((written, all))
    }

    /// Keeps `rest`, which the receiver did not take.
    pub(super) fn keep(&mut self, rest: &[u8]) {
        self.data.extend_from_slice(rest);
    }
}

/// Writes as much of `data` as `to` takes now; how much that was. One
/// call: a stream socket takes less than offered only when its send buffer
/// is full, so another call would only say EAGAIN.
pub(super) fn write_now(to: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    loop {
        match socket::send(
            to.as_raw_fd(),
            data,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EAGAIN) => return Ok(0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A read of a non-blocking socket; `Ok(None)` for "nothing now".
pub(super) fn read_some(from: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(from, buffer) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        match nix::fcntl::splice(from, None, to, None, len, flags) {
            Err(Errno::EINTR) => continue,
            result => return result,
        }
    }
}

/// Whether a splice error means "this pair cannot be spliced" rather than
/// a failed connection.
fn splice_refused(e: Errno) -> bool {
    matches!(e, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
}

/// The two ends of a flow, with what is known of their readiness. For an
/// echo both are the same socket.
pub(super) struct Ends<'a> {
    pub(super) from: BorrowedFd<'a>,
    pub(super) readable: &'a mut bool,
    /// The sender's `Ready::read_closed`.
    pub(super) read_closed: bool,
    pub(super) to: BorrowedFd<'a>,
    pub(super) writable: &'a mut bool,
}

/// One direction: what is in flight and whether the sender has finished.
#[derive(Default)]
pub(super) struct Flow {
    /// The pipe holding `in_pipe` bytes, while there are any.
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// Copied bytes the receiver did not take yet.
    outbox: Outbox,
    /// The sender will send no more.
    pub(super) eof: bool,
    /// Splice was refused for this flow: copy from now on.
    copy: bool,
    /// The flow moves bulk: its reads splice.
    bulk: bool,
    /// Bytes read from the sender.
    pub(super) bytes: u64,
    /// Bytes the receiver took.
    pub(super) delivered: u64,
}

impl Flow {
    /// Bytes read and not yet taken by the receiver.
    pub(super) fn pending(&self) -> usize {
        self.in_pipe + self.outbox.pending()
    }

    /// Moves one read's worth: what is held goes out first, then one read
    /// if the receiver took it all. `Ok(true)` when something moved or the
    /// sender's end was seen; nothing is read while bytes are held.
    pub(super) fn step(&mut self, ends: &mut Ends<'_>, movers: &mut Movers) -> io::Result<bool> {
        let mut progress = self.write_held(ends, movers)?;
        if self.pending() > 0 || self.eof || !*ends.readable {
            return Ok(progress);
        }
        let moved = if self.copy || !movers.splice || !self.bulk {
            self.copy_read(ends, movers)?
        } else {
            match movers.pipe() {
                Some(pipe) => self.splice_read(pipe, ends, movers)?,
                None => self.copy_read(ends, movers)?,
            }
        };
        progress |= moved;
        if moved && self.pending() > 0 {
            progress |= self.write_held(ends, movers)?;
        }
        Ok(progress)
    }

    /// Writes out what is held, if the receiver may take it.
    fn write_held(&mut self, ends: &mut Ends<'_>, movers: &mut Movers) -> io::Result<bool> {
        if self.pending() == 0 || !*ends.writable {
            return Ok(false);
        }
        if let Some(pipe) = &self.pipe {
            let written = match splice(pipe.read.as_fd(), ends.to, self.in_pipe) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => 0,
                Err(e) if splice_refused(e) => return self.unpipe(ends, movers),
                Err(e) => return Err(e.into()),
            };
            self.in_pipe -= written;
            self.delivered += written as u64;
            if self.in_pipe == 0 {
                if let Some(pipe) = self.pipe.take() {
                    movers.give_back(pipe);
                }
            } else {
                *ends.writable = false;
            }
            return Ok(written > 0);
        }
        let (written, all) = self.outbox.flush(ends.to)?;
        self.delivered += written as u64;
        if !all {
            *ends.writable = false;
        }
        Ok(written > 0)
    }

    /// The receiver refuses spliced bytes: what the pipe holds moves to the
    /// outbox and the flow copies from now on.
    fn unpipe(&mut self, ends: &mut Ends<'_>, movers: &mut Movers) -> io::Result<bool> {
        self.copy = true;
        if let Some(pipe) = self.pipe.take() {
            let scratch = movers.scratch();
            while self.in_pipe > 0 {
                match read_some(pipe.read.as_fd(), scratch)? {
                    Some(n) if n > 0 => {
                        self.outbox.keep(&scratch[..n]);
                        self.in_pipe -= n.min(self.in_pipe);
                    }
                    _ => break,
                }
            }
            self.in_pipe = 0;
        }
        self.write_held(ends, movers)
    }

    fn splice_read(
        &mut self,
        pipe: Pipe,
        ends: &mut Ends<'_>,
        movers: &mut Movers,
    ) -> io::Result<bool> {
        match splice(ends.from, pipe.write.as_fd(), PIPE_SIZE) {
            Ok(0) => {
                movers.give_back(pipe);
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.bytes += n as u64;
                self.in_pipe = n;
                self.pipe = Some(pipe);
                self.bulk = n >= BULK;
                Ok(true)
            }
            Err(Errno::EAGAIN) => {
                movers.give_back(pipe);
                *ends.readable = false;
                Ok(false)
            }
            Err(e) if splice_refused(e) => {
                movers.give_back(pipe);
                self.copy = true;
                self.copy_read(ends, movers)
            }
            Err(e) => {
                movers.give_back(pipe);
                Err(e.into())
            }
        }
    }

    fn copy_read(&mut self, ends: &mut Ends<'_>, movers: &mut Movers) -> io::Result<bool> {
        let scratch = movers.scratch();
        match read_some(ends.from, scratch)? {
            None => {
                *ends.readable = false;
                Ok(false)
            }
            Some(0) => {
                self.eof = true;
                Ok(true)
            }
            Some(n) => {
                // A stream socket returns less than asked only when its
                // queue is empty: the next read would say EAGAIN (unless
                // the peer's end was reported: then it would say 0).
                if n < scratch.len() && !ends.read_closed {
                    *ends.readable = false;
                }
                self.bulk = n >= BULK;
                self.bytes += n as u64;
                let written = if *ends.writable {
                    write_now(ends.to, &scratch[..n])?
                } else {
                    0
                };
                self.delivered += written as u64;
                if written < n {
                    *ends.writable = false;
                    self.outbox.keep(&scratch[written..n]);
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A flow between two real socket pairs: `writer` -> [a | b] -> `reader`.
    struct Rig {
        writer: UnixStream,
        from: UnixStream,
        to: UnixStream,
        reader: UnixStream,
        readable: bool,
        writable: bool,
        read_closed: bool,
    }

    impl Rig {
        fn new() -> Rig {
            let (writer, from) = UnixStream::pair().unwrap();
            let (to, reader) = UnixStream::pair().unwrap();
            from.set_nonblocking(true).unwrap();
            to.set_nonblocking(true).unwrap();
            reader
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            Rig {
                writer,
                from,
                to,
                reader,
                readable: true,
                writable: true,
                read_closed: false,
            }
        }

        fn step(&mut self, flow: &mut Flow, movers: &mut Movers) -> io::Result<bool> {
            let mut ends = Ends {
                from: self.from.as_fd(),
                readable: &mut self.readable,
                read_closed: self.read_closed,
                to: self.to.as_fd(),
                writable: &mut self.writable,
            };
            flow.step(&mut ends, movers)
        }
    }

    /// Sends `data` through the flow (the writer from another thread) and
    /// checks what comes out; then the end.
    fn pass(rig: &mut Rig, flow: &mut Flow, movers: &mut Movers, data: &[u8]) {
        let mut writer = rig.writer.try_clone().unwrap();
        let sent = data.to_vec();
        let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = vec![0u8; data.len()];
        let mut at = 0;
        rig.reader.set_nonblocking(true).unwrap();
        while at < data.len() {
            rig.readable = true;
            rig.writable = true;
            rig.step(flow, movers).unwrap();
            match rig.reader.read(&mut got[at..]) {
                Ok(n) => at += n,
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            }
        }
        rig.reader.set_nonblocking(false).unwrap();
        sender.join().unwrap();
        assert!(got == data);
        // Drained: nothing held, and an idle flow holds no pipe.
        assert_eq!(flow.pending(), 0);
        assert!(flow.pipe.is_none());
    }

    #[test]
    fn small_exchanges_are_copied_and_bulk_is_spliced_through_a_pooled_pipe() {
        let mut movers = Movers::new(true);
        let mut rig = Rig::new();
        let mut flow = Flow::default();
        pass(&mut rig, &mut flow, &mut movers, b"hello");
        assert_eq!(flow.bytes, 5);
        assert_eq!(movers.idle_pipes(), 0, "a small exchange is copied");
        let bulk: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        pass(&mut rig, &mut flow, &mut movers, &bulk);
        assert_eq!(
            movers.idle_pipes(),
            1,
            "bulk went through one pipe, given back"
        );
        rig.writer.shutdown(std::net::Shutdown::Write).unwrap();
        rig.readable = true;
        while !flow.eof {
            rig.step(&mut flow, &mut movers).unwrap();
        }
        assert_eq!(flow.bytes, 5 + bulk.len() as u64);
    }

    #[test]
    fn with_splice_off_bulk_is_copied_and_no_buffer_is_kept() {
        let mut movers = Movers::new(false);
        let mut rig = Rig::new();
        let mut flow = Flow::default();
        let bulk: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        pass(&mut rig, &mut flow, &mut movers, &bulk);
        assert_eq!(movers.idle_pipes(), 0);
        assert_eq!(flow.outbox.data.capacity(), 0);
    }

    fn a_full_receiver_stops_the_sender(splice: bool) {
        let mut movers = Movers::new(splice);
        let mut rig = Rig::new();
        let mut flow = Flow::default();
        rig.writer.set_nonblocking(true).unwrap();
        let block = vec![7u8; 1 << 20];
        let mut sent = 0;
        // Fill everything: the writer's socket, the flow, the receiver.
        for _ in 0..200 {
            if let Ok(n) = rig.writer.write(&block) {
                sent += n;
            }
            rig.readable = true;
            rig.step(&mut flow, &mut movers).unwrap();
        }
        assert!(!rig.writable, "the receiver filled up");
        assert!(flow.pending() > 0 && flow.pending() <= PIPE_SIZE.max(CHUNK));
        // Held bytes are bounded, and nothing is read while they wait.
        let read_before = flow.bytes;
        rig.readable = true;
        assert!(!rig.step(&mut flow, &mut movers).unwrap());
        assert_eq!(flow.bytes, read_before);
        // The reader takes everything; the flow follows as it is told the
        // receiver is writable again.
        rig.writer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = 0;
        let mut buffer = vec![0u8; 1 << 16];
        while received < sent {
            let n = rig.reader.read(&mut buffer).unwrap();
            assert!(buffer[..n].iter().all(|b| *b == 7));
            received += n;
            rig.readable = true;
            rig.writable = true;
            rig.step(&mut flow, &mut movers).unwrap();
        }
        assert_eq!(received, sent);
        assert_eq!(flow.bytes as usize, sent);
    }

    #[test]
    fn a_full_receiver_stops_a_spliced_sender() {
        a_full_receiver_stops_the_sender(true);
    }

    #[test]
    fn a_full_receiver_stops_a_copied_sender() {
        a_full_receiver_stops_the_sender(false);
    }

    #[test]
    fn a_short_copy_read_is_taken_as_drained() {
        let mut movers = Movers::new(false);
        let mut rig = Rig::new();
        let mut flow = Flow::default();
        rig.writer.write_all(b"abc").unwrap();
        rig.step(&mut flow, &mut movers).unwrap();
        assert!(!rig.readable, "a short read needs no EAGAIN to follow");
        assert!(rig.writable);
    }

    #[test]
    fn a_short_read_with_the_end_reported_reads_on_to_the_end() {
        let mut movers = Movers::new(false);
        let mut rig = Rig::new();
        let mut flow = Flow::default();
        rig.writer.write_all(b"abc").unwrap();
        rig.writer.shutdown(std::net::Shutdown::Write).unwrap();
        // epoll reported the bytes and the end in one event: no edge
        // follows for the end.
        rig.read_closed = true;
        rig.step(&mut flow, &mut movers).unwrap();
        assert!(rig.readable);
        rig.step(&mut flow, &mut movers).unwrap();
        assert!(flow.eof);
    }
}
