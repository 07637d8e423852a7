/* model/wait.pml — the userpipe ring indices and wait protocol, one writer
 * and one reader, step for step as include/userpipe/detail/wait.hpp,
 * detail/ring.hpp and src/pipe.cpp do them. Checked by scripts/model.
 *
 * Every statement that touches a shared variable is one Promela step, so
 * spin explores every interleaving of the two threads' loads and stores
 * (sequential consistency), except where the code is weaker on purpose:
 * in the asymmetric fence mode (the default; -DSYMMETRIC=1 checks the
 * other) an index publish is a release store that may sit in its thread's
 * store buffer (hbuf/tbuf below) while that thread's later loads run; the
 * buffer drains at any moment, at the thread's own seq_cst store or
 * read-modify-write, or when the *other* thread runs the heavy barrier (WH,
 * membarrier). See model/README.md for what that leaves out. Labels
 * W1..W4, WH and K1..K3 are the ones in the comment at the top of wait.hpp.
 *
 * What spin proves, for every interleaving, every write/prepare/read/peek
 * size, every close (either side, any time, with or without a reason):
 *  - no lost wake-up: spin reports an "invalid end state" if the run can
 *    stop with a side asleep in futex_wait (or anywhere but the end), e.g.
 *    a reader asleep after the writer closed, or a writer asleep after the
 *    reader closed, or both asleep while the ring says one may proceed;
 *  - the reader never reads a byte the writer has not published, and the
 *    writer never overwrites one the reader has not consumed (assertions on
 *    the ring's slots, each holding its stream offset + 1);
 *  - EOF (or the writer's close error) only after the last published byte,
 *    and with the writer's reason;
 *  - a writer whose reader closed gets broken_pipe (or the reader's reason).
 *
 * MUTANT selects a deliberately broken variant that spin must catch:
 *  1  the waiter re-checks ready() *before* announcing state = thread
 *  2  reader.close() does not wake the writer's slot
 *  3  poll() reports EOF without re-reading head after seeing the close flag
 *  4  notify() wakes only past the target (index > target, off by one)
 *  5  asymmetric publish, but the sleeper skips the heavy barrier (WH)
 *  6  the writer, about to sleep for room, does not wake a gathering reader
 *  7  a gathering reader does not end its gather when the writer waits
 *  8  (SHARED) the sleeper publishes no generation: the waker's ring-once
 *     dedupe then swallows the bell of a later sleep
 *  9  (SHARED) the sleeper's poll ignores the peer's hang-up
 *
 * SHARED=1 models a shared pipe (userpipe/shared.hpp, "Across processes"
 * in wait.hpp): symmetric publish; a side sleeps in poll() on its socket
 * (bells[s] pending doorbells, hup[s] the peer's socket closed) instead of
 * futex_wait; a waker rings a bell once per published generation of the
 * sleeper's state instead of exchanging it; close rings and closes its
 * socket; and either process may DIE at any step (a killer sets the flag
 * and the kernel's hang-up at once), after which it takes no step. The
 * survivor must still reach its end: the reader with EOF after every byte
 * the dead writer published, the writer with broken_pipe. `gone_r`/`gone_w`
 * are each process's private verdict.
 */

#ifndef CAP
#define CAP 2           /* ring capacity, a power of two */
#endif
#ifndef TOTAL
#define TOTAL 3         /* bytes the writer may publish in all */
#endif
#ifndef SPINS
#define SPINS 1         /* most ready() checks in the spin phase */
#endif
#ifndef MUTANT
#define MUTANT 0
#endif
#ifndef BATCHED
#define BATCHED 0      /* 1: read_some_batched with a gather that may expire; 2: never expires */
#endif
#ifndef SHARED
#define SHARED 0       /* 1: a shared pipe (implies SYMMETRIC) */
#endif
#if SHARED
#undef SYMMETRIC
#define SYMMETRIC 1
#endif
#ifndef SYMMETRIC
#define SYMMETRIC 0    /* 1: fence_mode::symmetric (seq_cst publish, no heavy barrier) */
#endif

#define IDLE   0        /* wait_slot::idle */
#define THREAD 1        /* wait_slot::thread */

#define WRITER_CLOSED 1 /* pipe_state::writer_closed */
#define READER_CLOSED 2 /* pipe_state::reader_closed */

#define E_NONE    0
#define E_PIPE    1     /* std::errc::broken_pipe */
#define E_WREASON 2     /* the error the writer closed with */
#define E_RREASON 3     /* the error the reader closed with */

#define RS 0            /* pipe_state::reader_wait: reader sleeps, writer wakes */
#define WS 1            /* pipe_state::writer_wait: writer sleeps, reader wakes */

#define ST_DATA  0      /* reader::status */
#define ST_EMPTY 1
#define ST_EOF   2

#define MIN(a, b) ((a) < (b) -> (a) : (b))

/* ---- shared state: ring, pipe_state ------------------------------------ */
byte head;              /* ring::head_, as other threads see it */
byte tail;              /* ring::tail_ */
bool hpend;             /* the writer's store buffer holds hbuf for head */
byte hbuf;
bool tpend;             /* the reader's store buffer holds tbuf for tail */
byte tbuf;
byte buf[CAP];          /* ring bytes: slot i holds stream offset + 1 */
byte closed;            /* pipe_state::closed */
byte writer_reason;     /* written before the close bit, read after it */
byte reader_reason;
byte state[2];          /* wait_slot::state_, the futex word */
byte target[2];         /* wait_slot::target_ */
bool in_kernel[2];      /* the slot's owner sleeps in futex_wait */
/* SHARED only */
byte bells[2];          /* a doorbell is pending on the slot owner's socket (poll needs no more) */
bool hup[2];            /* the slot owner's peer's socket is closed (close or death) */
byte last_rung[2];      /* the waker's private: the state it last rang for */
byte gen[2];            /* the owner's private: sleeps so far, modulo 4 (the code's 2^30 never
                           wraps within a wait; here 4 sleeps in a row without a ring would
                           need more stale bells than a run can leave) */
byte gone_r;            /* the reader process's private verdict (WRITER_CLOSED) */
byte gone_w;            /* the writer process's private verdict (READER_CLOSED) */
bool writer_dies;
bool reader_dies;

/* v = any value in lo..hi (a size the caller may pass) */
inline pick(v, lo, hi) {
  atomic {
    v = lo;
    do
    :: v < hi -> v++
    :: break
    od
  }
}

/* ---- store buffers and fences (fence.hpp) ------------------------------ */

/* The calling thread's own buffered publish becomes visible: its seq_cst
 * stores and read-modify-writes (W2, the close fetch_or, wake's exchange)
 * are full barriers. `is_writer` is the calling process's. */
inline drain_own() {
  if
  :: is_writer && hpend -> head = hbuf; hpend = false
  :: !is_writer && tpend -> tail = tbuf; tpend = false
  :: else -> skip
  fi
}

/* WH: membarrier(PRIVATE_EXPEDITED) from the calling thread makes the
 * other thread pass a full barrier: its buffered publish becomes visible. */
inline heavy_fence() {
#if !SYMMETRIC && MUTANT != 5
  atomic {
    if
    :: is_writer && tpend -> tail = tbuf; tpend = false
    :: !is_writer && hpend -> head = hbuf; hpend = false
    :: else -> skip
    fi
  }
#else
  skip
#endif
}

/* A store buffer drains on its own, at any moment. */
proctype drainer() {
end:
  do
  :: atomic { hpend -> head = hbuf; hpend = false }
  :: atomic { tpend -> tail = tbuf; tpend = false }
  od
}

/* ---- wait_slot (wait.hpp, wait.cpp) ------------------------------------ */

#if SHARED
/* wait_slot::sleep_on_socket: poll() returns for a bell, a hang-up (which
 * sets the private gone bit) or the deadline; then the owner resets its
 * state itself. */
inline futex_wait(s) {
  if
  :: atomic { bells[s] > 0 -> bells[s] = 0 }
#if MUTANT != 9
  :: atomic { hup[s] -> bells[s] = 0;
       if
       :: s == RS -> gone_r = gone_r | WRITER_CLOSED
       :: else -> gone_w = gone_w | READER_CLOSED
       fi }
#endif
  :: timed -> skip
  fi;
  state[s] = IDLE
}

/* send_bell: one byte, MSG_DONTWAIT; a full socket drops it. */
inline ring_bell(s) {
  atomic {
    if
    :: bells[s] < 1 -> bells[s]++
    :: else -> skip
    fi
  }
}

/* wait_slot::wake of a shared slot (the other end's close, also_wake):
 * rings unconditionally. */
inline wake(s) {
  ring_bell(s)
}

/* wait_slot::notify of a shared slot: K2, K3, then ring once per state. */
inline notify(s, index) {
  old = state[s];                              /* K2 */
  if
  :: old == IDLE -> skip
  :: else ->
     if
     :: index < target[s] -> skip              /* K3 */
     :: else ->
        if
        :: old == last_rung[s] -> skip         /* rung for this sleep already */
        :: else -> last_rung[s] = old; ring_bell(s)
        fi
     fi
  fi;
  old = 0
}
#else
/* FUTEX_WAIT compares the word and queues the thread in one step in the
 * kernel; the thread then sleeps until a FUTEX_WAKE on the word. */
inline futex_wait(s) {
  atomic {
    if
    :: state[s] == THREAD -> in_kernel[s] = true
    :: else -> skip
    fi
  };
  if
  :: !in_kernel[s]
  :: timed -> in_kernel[s] = false             /* the deadline passed */
  fi
}

/* wait_slot::wake: exchange(state, idle); futex_wake if a thread slept. */
inline wake(s) {
  atomic { drain_own(); old = state[s]; state[s] = IDLE };
  atomic {
    if
    :: old == THREAD -> in_kernel[s] = false  /* futex_wake */
    :: else -> skip
    fi;
    old = 0
  }
}

/* wait_slot::notify, after the caller's K1 publish of `index`. */
inline notify(s, index) {
  if
  :: state[s] == IDLE -> skip                 /* K2 */
  :: else ->
     if
#if MUTANT == 4
     :: index <= target[s] -> skip
#else
     :: index < target[s] -> skip              /* K3 */
#endif
     :: else -> wake(s)
     fi
  fi
}
#endif

/* The ready() lambdas of wait_for_room / wait_for_data: the other side's
 * index (seq_cst), then the close flag (seq_cst), two separate loads. */
inline ready(s) {
  atomic {
    if
    :: s == RS -> rdy = (head >= tgt)
    :: else -> rdy = (tail >= tgt)
    fi
  };
  atomic {
    if
    :: !rdy && s == RS -> rdy = (((closed | gone_r) & WRITER_CLOSED) != 0)
    :: !rdy && s == WS -> rdy = (((closed | gone_w) & READER_CLOSED) != 0)
    :: else -> skip
    fi
  };
#if MUTANT != 7
  /* read_some_batched's gather also ends once the writer waits for room */
  atomic {
    if
    :: !rdy && gather -> rdy = (state[WS] != IDLE)
    :: else -> skip
    fi
  }
#else
  skip
#endif
}

/* wait_slot::wait(tgt, ready, deadline = max): returns with rdy true. */
inline wait(s) {
  /* spin(): ready() checks until the time budget runs out: here, any
   * number from 0 to SPINS (0 stands for a spin that the scheduler cut
   * short). Read-only, so the count only matters
   * for which interleavings are explored. */
  rdy = false;
  k = 0;
  do
  :: !rdy && k < SPINS -> ready(s); k++
  :: else -> break
  :: break
  od;
  timed_out = false;
  do
  :: rdy || timed_out -> break
  :: else ->
     target[s] = tgt;                          /* W1 */
#if MUTANT == 1
     ready(s);                                 /* W3 before W2: broken */
     atomic { drain_own(); state[s] = THREAD };
#else
#if SHARED && MUTANT != 8
     atomic { gen[s] = (gen[s] + 1) % 4; state[s] = gen[s] * 4 + THREAD };  /* W2, a new generation */
#else
     atomic { drain_own(); state[s] = THREAD };  /* W2 (seq_cst) */
#endif
     heavy_fence();                            /* WH */
     ready(s);                                 /* W3 */
#endif
     if
     :: atomic { rdy -> state[s] = IDLE }      /* withdraw */
     :: atomic { !rdy && timed -> state[s] = IDLE; timed_out = true }  /* deadline */
     :: !rdy ->
#if MUTANT != 6
        /* writer::wait_for_room's also_wake: a gathering reader */
        if
        :: s == WS && state[RS] != IDLE -> wake(RS)
        :: else -> skip
        fi;
#endif
        futex_wait(s)                          /* W4, then loop to W1 */
     fi
  od;
  atomic { k = 0; tgt = 0; rdy = false; timed_out = false }
}

/* ---- writer (pipe.hpp, pipe.cpp) ---------------------------------------- */

/* ring::free_space(want): the cached tail first, the real one if short. */
inline free_space(want) {
  atomic {
    free = CAP - (h - ctail);
    if
    :: free < want -> ctail = tail; free = CAP - (h - ctail)
    :: else -> skip
    fi
  }
}

/* writer::check_reader: the flag (acquire), then the reason. */
inline check_reader() {
  atomic {
    if
    :: (closed & READER_CLOSED) != 0 ->
       /* the reason was written before the flag and never changes */
       err = (reader_reason != E_NONE -> reader_reason : E_PIPE)
    :: (closed & READER_CLOSED) == 0 && (gone_w & READER_CLOSED) != 0 ->
       err = E_PIPE                            /* died without a word */
    :: else -> skip
    fi
  }
}

/* Copies p bytes into the ring at h (ring::push's memcpy). The copy cannot
 * race with the reader unless the writer overwrites unread bytes, which the
 * assertion catches; so it is one step. */
inline fill(p) {
  d_step {
    i = 0;
    do
    :: i < p ->
       assert(h + i < tail + CAP);             /* the slot is free */
       buf[(h + i) % CAP] = h + i + 1;
       i++
    :: else -> break
    od;
    i = 0
  }
}

/* ring::publish + notify: head = h + n, then the reader's slot. */
inline publish(n) {
#if SYMMETRIC
  atomic { h = h + n; head = h };              /* K1, seq_cst */
#else
  atomic { h = h + n; hbuf = h; hpend = true };/* K1, release: buffered */
#endif
  notify(RS, h)
}

/* writer::push(remaining): copies and publishes quantum by quantum
 * (ring::quantum() is the whole capacity for rings of 4 KiB or less, so
 * CAP here) until all is in or nothing fits; p = count, err on a closed
 * reader. */
inline push() {
  p = 0;
  check_reader();
  if
  :: err == E_NONE ->
     do
     :: p < remaining ->
        q = MIN(remaining - p, CAP);
        free_space(q);
        atomic { q = MIN(q, free); free = 0 };
        if
        :: q > 0 -> fill(q); publish(q); p = p + q
        :: else -> break
        fi
     :: else -> break
     od;
     q = 0
  :: else -> skip
  fi
}

/* writer::wait_for_room(want). */
inline wait_for_room() {
  free_space(want);
  if
  :: atomic { free >= want -> free = 0 }
  :: else ->
     atomic { tgt = h + want - CAP; free = 0 };
     wait(WS)
  fi;
  check_reader()
}

proctype writer() {
  byte h, ctail;                 /* ring::head() (own), ring::cached_tail_ */
  byte remaining, p, q, want, free, tgt, i, k, old, n, lim;
  bool rdy, timed, timed_out;
  bool gather = false;           /* never: only the reader gathers */
  bool is_writer = true;
  byte err = E_NONE;
#if SHARED
  {
#endif

  do
  :: h < TOTAL ->
     /* write(data), data.size() in 1..CAP+1: a write larger than the
      * ring streams through. */
     lim = MIN(CAP + 1, TOTAL - h);
     pick(remaining, 1, lim);
     push();
     remaining = remaining - p;
     /* write_blocking(all = true) */
     do
     :: err != E_NONE || remaining == 0 -> break
     :: else ->
        want = MIN(remaining, CAP / 2);        /* wake_threshold */
        wait_for_room();
        if
        :: err != E_NONE -> break
        :: else -> push(); remaining = remaining - p
        fi
     od;
     if
     :: err != E_NONE -> break
     :: else -> skip
     fi;
     d_step { remaining = 0; p = 0; want = 0 }
  :: h < TOTAL ->
     /* prepare(min_size), min_size in 1..CAP, then commit(n >= 1) */
     pick(want, 1, CAP);
     check_reader();
     if
     :: err != E_NONE -> break
     :: else -> skip
     fi;
     free_space(want);
     if
     :: atomic { free < want -> free = 0 }; wait_for_room()
     :: else -> free = 0
     fi;
     if
     :: err != E_NONE -> break
     :: else -> skip
     fi;
     /* ring::writable(min_size) */
     atomic { lim = CAP - (h % CAP); lim = (want > lim -> want : lim) };
     free_space(lim);
     atomic { lim = MIN(free, CAP - (h % CAP)); free = 0 };
     lim = MIN(lim, TOTAL - h);
     pick(n, 1, lim);
 
     fill(n);
     publish(n);
     d_step { n = 0; lim = 0; want = 0; free = 0 }
  :: break                                     /* stop writing early */
  od;

  /* A writer stops early with an error only because the reader closed,
   * and then with broken_pipe or the reader's reason. */
  assert(err == E_NONE ||
         ((closed & READER_CLOSED) != 0 &&
          err == (reader_reason != E_NONE -> reader_reason : E_PIPE)) ||
         ((gone_w & READER_CLOSED) != 0 && reader_dies && err == E_PIPE));

  /* writer::close(reason) */
  if
  :: writer_reason = E_NONE
  :: writer_reason = E_WREASON
  fi;
  atomic { drain_own(); closed = closed | WRITER_CLOSED };  /* fetch_or, seq_cst */
  wake(RS);
#if SHARED
  hup[RS] = true                               /* close_socket */
  } unless { writer_dies }
#else
  wake(WS)                                     /* a callback this end parked */
#endif
}

/* ---- reader -------------------------------------------------------------- */

/* ring::readable_size(want). */
inline readable_size(want) {
  atomic {
    used = chead - t;
    if
    :: used < want -> chead = head; used = chead - t
    :: else -> skip
    fi
  }
}

/* Consumes n bytes: checks them (ring::pop's memcpy), releases (K1 on the
 * writer's slot) and notifies. */
inline take(n) {
  d_step {
    i = 0;
    do
    :: i < n ->
       assert(t + i < head);                   /* published */
       assert(buf[(t + i) % CAP] == t + i + 1);/* the right byte */
       i++
    :: else -> break
    od;
    i = 0
  };
#if SYMMETRIC
  atomic { t = t + n; tail = t };              /* K1, seq_cst */
#else
  atomic { t = t + n; tbuf = t; tpend = true };/* K1, release: buffered */
#endif
  notify(WS, t)
}

/* reader::pop(m): up to m bytes, quantum by quantum; got = count. */
inline pop(m) {
  got = 0;
  do
  :: got < m ->
     q = MIN(m - got, CAP);
     readable_size(q);
     atomic { q = MIN(q, used); used = 0 };
     if
     :: q > 0 -> take(q); got = got + q
     :: else -> break
     fi
  :: else -> break
  od;
  q = 0
}

/* reader::poll: data, empty, or EOF (ec = the writer's reason). */
inline poll() {
  readable_size(1);
  if
  :: atomic { used != 0 -> st = ST_DATA; used = 0 }
  :: else ->
     if
     :: ((closed | gone_r) & WRITER_CLOSED) == 0 -> st = ST_EMPTY
     :: else ->
#if MUTANT == 3
        st = ST_EOF
#else
        readable_size(1);                      /* look again */
        atomic {
          if
          :: used != 0 -> st = ST_DATA
          :: else -> st = ST_EOF
          fi;
          used = 0
        }
#endif
     fi
  fi;
  if
  :: st == ST_EOF ->
     /* shared: the reason is the flag's, or none for a writer that died */
     ec = ((closed & WRITER_CLOSED) != 0 -> writer_reason : E_NONE);
     /* EOF only after the last published byte, with the writer's reason */
     assert(t == head &&
            (((closed & WRITER_CLOSED) != 0 && ec == writer_reason) ||
             ((closed & WRITER_CLOSED) == 0 && (gone_r & WRITER_CLOSED) != 0 && writer_dies && ec == E_NONE)))
  :: else -> skip
  fi
}

/* reader::read_some(buffer of m bytes): pop, then read_blocking(all =
 * false); st == ST_EOF at end-of-file. */
inline read_some() {
  pop(m);
  done = got;
  st = ST_DATA;
  do
  :: done != 0 -> break
  :: else ->
     poll();
     if
     :: st == ST_DATA -> pop(m); done = got
     :: st == ST_EOF -> break
     :: st == ST_EMPTY -> wait_for_data()
     fi
  od
}

/* reader::wait_for_data(1). */
inline wait_for_data() {
  tgt = t + 1;
  wait(RS)
}

proctype reader() {
  byte t, chead;                 /* ring::tail() (own), ring::cached_head_ */
  byte m, ms, want, used, got, q, done, tgt, i, k, old, st, span;
  bool rdy, timed, timed_out;
  bool gather = false;           /* in read_some_batched's wait */
  bool is_writer = false;
  byte ec = E_NONE;
#if SHARED
  {
#endif

  do
  :: /* read_some(buffer of m bytes), m in 1..CAP+1 */
     pick(m, 1, CAP + 1);
     read_some();
     if
     :: st == ST_EOF -> break
     :: else -> skip
     fi;
     d_step { m = 0; got = 0; done = 0; st = 0 }
#if BATCHED
  :: /* read_some_batched(buffer of m bytes, min_size ms, gather): waits
      * for min(ms, m, CAP/2) bytes unless the writer closed, until the
      * gather deadline (BATCHED 1: may pass at any time; BATCHED 2: never,
      * a gather longer than the run), then read_some. */
     pick(m, 1, CAP + 1);
     pick(ms, 1, CAP);
     atomic { want = MIN(MIN(ms, m), CAP / 2); want = (want < 1 -> 1 : want); ms = 0 };
     readable_size(want);
     if
     :: atomic { used < want -> used = 0 };
        if
        :: ((closed | gone_r) & WRITER_CLOSED) == 0 ->
           atomic { tgt = t + want; timed = (BATCHED == 1); gather = true };
           wait(RS);
           atomic { timed = false; gather = false }
        :: else -> skip
        fi
     :: else -> used = 0
     fi;
     want = 0;
     read_some();
     if
     :: st == ST_EOF -> break
     :: else -> skip
     fi;
     d_step { m = 0; got = 0; done = 0; st = 0 }
#endif
  :: /* peek(), then consume(n) of 1..span.size() */
     readable_size(CAP - (t % CAP));            /* ring::readable() */
     atomic { span = MIN(used, CAP - (t % CAP)); used = 0 };
     st = ST_DATA;
     do
     :: span != 0 -> break
     :: else ->
        poll();
        if
        :: st == ST_DATA ->
           readable_size(CAP - (t % CAP));
           atomic { span = MIN(used, CAP - (t % CAP)); used = 0 }
        :: st == ST_EOF -> break
        :: st == ST_EMPTY -> wait_for_data()
        fi
     od;
     if
     :: st == ST_EOF -> break
     :: else -> pick(m, 1, span); take(m)
     fi;
     d_step { m = 0; span = 0; st = 0 }
  :: break                                     /* close before EOF */
  od;

  /* reader::close(reason) */
  if
  :: reader_reason = E_NONE
  :: reader_reason = E_RREASON
  fi;
  atomic { drain_own(); closed = closed | READER_CLOSED };  /* fetch_or, seq_cst */
#if MUTANT != 2
  wake(WS);
#endif
#if SHARED
  hup[WS] = true                               /* close_socket */
  } unless { reader_dies }
#else
  wake(RS)
#endif
}

/* SHARED: at most one process dies, at any step; the kernel closes its
 * socket at once (the peer's poll sees POLLHUP). */
proctype killer() {
  if
  :: atomic { writer_dies = true; hup[RS] = true }
  :: atomic { reader_dies = true; hup[WS] = true }
  :: skip
  fi
}

init {
  atomic {
    run writer();
    run reader();
#if SHARED
    run killer();
#endif
    run drainer()
  }
}
