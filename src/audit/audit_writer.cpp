// The audit writer thread: drains every worker's ring, formats records into large buffers and
// writes each full buffer with one io_uring write at its file offset (pwrite() where io_uring is
// unavailable), rotating NAME → NAME.1 → … → NAME.keep by size.
//
// Invariants.
// - Bytes reach the file in ring order: a buffer's offset is fixed when it is submitted, and
//   buffers are submitted in the order they were filled, so concurrent writes land in order.
// - Rotation waits for every write in flight to the old file before closing and renaming it, so
//   a record is never in a later file than one pushed after it by the same worker.
// - A buffer is released (and its records counted written) only when its write completed in
//   full; short writes are resubmitted for the rest, at the right offset.
// - The hash chain follows the order lines are formatted in, which is the order they reach the
//   file(s): each line carries the SHA-256 of the line formatted before it, across rotations;
//   at start it goes on from the last complete line of the file. A write that fails leaves a
//   break in the chain there, as it should (those records are missing).
// - A captured prompt's slot goes back to its worker's pool once its text is in a buffer.
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "sluice/audit.hpp"

namespace sluice {
namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);
constexpr std::size_t kPopBatch = 64;    // records copied out of a ring at a time
constexpr int kPopsPerRingPerPass = 16;  // fairness: then move on to the next ring

std::string errno_text(int error) {
  return std::strerror(error);
}

}  // namespace

struct AuditWriter::Impl {
  struct Buffer {
    char* data = nullptr;
    std::size_t used = 0;  // bytes of complete lines
    uint64_t records = 0;  // lines in it
    std::size_t done = 0;  // bytes written so far (while in flight)
    uint64_t offset = 0;   // file offset of data[0]
    int fd = -1;
  };

  AuditWriter& owner;
  const AuditWriterConfig& config;
  std::size_t buffer_capacity = 0;
  std::vector<Buffer> buffers;
  std::vector<std::size_t> free_buffers;
  std::size_t current = kNone;  // buffer being filled
  unsigned in_flight = 0;
  bool unsubmitted = false;  // SQEs prepared but not yet submitted
  int fd = -1;
  uint64_t file_offset = 0;  // where the next submitted buffer goes
  bool use_uring = false;
  io_uring uring{};
  std::vector<AuditRecord> batch = std::vector<AuditRecord>(kPopBatch);
  std::size_t max_line = kMaxAuditLineBytes;  // with the largest capture slot of any ring
  std::vector<char> spill;                    // a line moved to the next file (max_line)
  AuditChain chain;

  Impl(AuditWriter& writer, const AuditWriterConfig& cfg) : owner(writer), config(cfg) {}

  ~Impl() {
    for (Buffer& buffer : buffers) std::free(buffer.data);
    if (use_uring) io_uring_queue_exit(&uring);
    if (fd >= 0) ::close(fd);
  }

  void count_error() { owner.write_errors_.fetch_add(1, std::memory_order_relaxed); }

  // Read too: start() reads the last line to go on with the chain.
  int open_file() { return ::open(config.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640); }

  // ---- buffers -------------------------------------------------------------------------------

  Buffer& current_buffer() {
    if (current == kNone) {
      while (free_buffers.empty()) wait_one();
      current = free_buffers.back();
      free_buffers.pop_back();
      Buffer& buffer = buffers[current];
      buffer.used = 0;
      buffer.records = 0;
    }
    return buffers[current];
  }

  void append(const AuditRecord& record, AuditCapturePool* capture) {
    Buffer* buffer = &current_buffer();
    std::span<char> room(buffer->data + buffer->used, buffer_capacity - buffer->used);
    AuditLineExtras extras;
    extras.prev = chain.prev();
    const bool captured = record.prompt == AuditPrompt::kCaptured && capture != nullptr;
    if (captured) {
      extras.prompt = capture->text(record.prompt_slot);
      extras.prompt_truncated = capture->truncated(record.prompt_slot);
    }
    const std::size_t n = format_json_line(record, room, extras);
    if (captured) capture->give_back(record.prompt_slot);
    if (n == 0) {
      owner.format_errors_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    chain.advance(std::string_view(room.data(), n - 1));  // without its newline
    const uint64_t file_bytes = file_offset + buffer->used;
    if (config.max_file_bytes != 0 && file_bytes > 0 && file_bytes + n > config.max_file_bytes) {
      // The line belongs to the next file: keep it aside, finish this file, rotate.
      std::memcpy(spill.data(), room.data(), n);
      submit_current();
      rotate();
      buffer = &current_buffer();
      std::memcpy(buffer->data + buffer->used, spill.data(), n);
    }
    buffer->used += n;
    buffer->records += 1;
    if (buffer_capacity - buffer->used < max_line) submit_current();
  }

  // ---- writes --------------------------------------------------------------------------------

  void submit_current() {
    if (current == kNone) return;
    Buffer& buffer = buffers[current];
    const std::size_t index = current;
    current = kNone;
    if (buffer.used == 0) {
      free_buffers.push_back(index);
      return;
    }
    if (fd < 0) {  // a failed rotation left no file: try again
      fd = open_file();
      if (fd < 0) {
        count_error();
        owner.records_lost_.fetch_add(buffer.records, std::memory_order_relaxed);
        free_buffers.push_back(index);
        return;
      }
      struct stat st {};
      file_offset = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    }
    buffer.fd = fd;
    buffer.offset = file_offset;
    buffer.done = 0;
    file_offset += buffer.used;
    ++in_flight;
    start_write(index);
  }

  void start_write(std::size_t index) {
    Buffer& buffer = buffers[index];
    if (use_uring) {
      io_uring_sqe* sqe = io_uring_get_sqe(&uring);
      if (sqe == nullptr) {  // SQ full: push what is queued, then there is room
        io_uring_submit(&uring);
        sqe = io_uring_get_sqe(&uring);
      }
      io_uring_prep_write(sqe, buffer.fd, buffer.data + buffer.done,
                          static_cast<unsigned>(buffer.used - buffer.done),
                          buffer.offset + buffer.done);
      io_uring_sqe_set_data64(sqe, index);
      unsubmitted = true;
      return;
    }
    while (buffer.done < buffer.used) {
      const ssize_t n = ::pwrite(buffer.fd, buffer.data + buffer.done, buffer.used - buffer.done,
                                 static_cast<off_t>(buffer.offset + buffer.done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        finish(index, false);
        return;
      }
      buffer.done += static_cast<std::size_t>(n);
    }
    finish(index, true);
  }

  void finish(std::size_t index, bool ok) {
    Buffer& buffer = buffers[index];
    if (ok) {
      owner.records_written_.fetch_add(buffer.records, std::memory_order_relaxed);
      owner.bytes_written_.fetch_add(buffer.used, std::memory_order_relaxed);
    } else {
      count_error();
      owner.records_lost_.fetch_add(buffer.records, std::memory_order_relaxed);
    }
    --in_flight;
    free_buffers.push_back(index);
  }

  void complete(std::size_t index, int result) {
    Buffer& buffer = buffers[index];
    if (result == -EINTR || result == -EAGAIN) {
      start_write(index);
    } else if (result <= 0) {
      finish(index, false);
    } else {
      buffer.done += static_cast<std::size_t>(result);
      if (buffer.done < buffer.used) {
        start_write(index);  // short write: the rest, at its offset
      } else {
        finish(index, true);
      }
    }
  }

  void submit_queued() {
    if (use_uring && unsubmitted) {
      io_uring_submit(&uring);
      unsubmitted = false;
    }
  }

  void reap_ready() {
    if (!use_uring) return;
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&uring, &cqe) == 0 && cqe != nullptr) {
      const auto index = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
      const int result = cqe->res;
      io_uring_cqe_seen(&uring, cqe);
      complete(index, result);
    }
    submit_queued();  // resubmissions of short writes
  }

  void wait_one() {
    if (!use_uring || in_flight == 0) return;
    submit_queued();
    io_uring_cqe* cqe = nullptr;
    int ret;
    do {
      ret = io_uring_wait_cqe(&uring, &cqe);
    } while (ret == -EINTR);
    if (ret < 0) {  // cannot happen with a live ring; do not spin
      count_error();
      return;
    }
    const auto index = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
    const int result = cqe->res;
    io_uring_cqe_seen(&uring, cqe);
    complete(index, result);
    submit_queued();
  }

  void wait_all() {
    submit_queued();
    while (in_flight > 0) wait_one();
  }

  // ---- rotation ------------------------------------------------------------------------------

  void rotate() {
    wait_all();
    if (fd >= 0) ::close(fd);
    fd = -1;
    const std::string& name = config.path;
    if (config.keep == 0) {
      if (::unlink(name.c_str()) != 0 && errno != ENOENT) count_error();
    } else {
      // NAME.(keep-1) → NAME.keep (replacing the oldest) … NAME.1 → NAME.2, then NAME → NAME.1.
      for (unsigned k = config.keep - 1; k >= 1; --k) {
        const std::string from = name + "." + std::to_string(k);
        const std::string to = name + "." + std::to_string(k + 1);
        if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) count_error();
      }
      if (::rename(name.c_str(), (name + ".1").c_str()) != 0) count_error();
    }
    fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) count_error();
    file_offset = 0;
    owner.rotations_.fetch_add(1, std::memory_order_relaxed);
  }

  // ---- draining ------------------------------------------------------------------------------

  std::size_t drain(const std::vector<AuditRing*>& rings) {
    std::size_t total = 0;
    for (AuditRing* ring : rings) {
      AuditCapturePool* capture = ring->capture();
      for (int pop = 0; pop < kPopsPerRingPerPass; ++pop) {
        const std::size_t n = ring->pop_batch(batch);
        for (std::size_t i = 0; i < n; ++i) append(batch[i], capture);
        total += n;
        if (n < batch.size()) break;
      }
    }
    submit_queued();
    reap_ready();
    return total;
  }
};

// Where appending goes on in an existing trail: after its last complete line, whose digest
// the chain takes as the previous one. An incomplete last line (a write torn by a crash, never
// counted written) is cut off, so the next record does not run on from it.
uint64_t AuditWriter::resume_chain(int fd, AuditChain& chain) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw std::runtime_error("audit log " + config_.path + ": cannot stat: " + errno_text(errno));
  const auto size = static_cast<uint64_t>(st.st_size);
  std::string tail;  // the file's bytes from tail_start to its end
  uint64_t tail_start = size;
  const auto read_more = [&]() -> bool {
    if (tail_start == 0) return false;
    const uint64_t block = std::min<uint64_t>(tail_start, 64 * 1024);
    tail_start -= block;
    std::string chunk(block, '\0');
    for (std::size_t got = 0; got < block;) {
      const ssize_t n =
          ::pread(fd, chunk.data() + got, block - got, static_cast<off_t>(tail_start + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw std::runtime_error("audit log " + config_.path + ": cannot read its last line: " +
                                 (n < 0 ? errno_text(errno) : std::string("short read")));
      got += static_cast<std::size_t>(n);
    }
    tail.insert(0, chunk);
    return true;
  };
  // The last complete line ends at the file's last '\n'.
  std::size_t newline = std::string::npos;
  while ((newline = tail.rfind('\n')) == std::string::npos && read_more()) {
  }
  const uint64_t complete = newline == std::string::npos ? 0 : tail_start + newline + 1;
  if (complete < size) {
    if (::ftruncate(fd, static_cast<off_t>(complete)) != 0)
      throw std::runtime_error("audit log " + config_.path +
                               ": cannot cut its torn last line: " + errno_text(errno));
    torn_bytes_cut_.fetch_add(size - complete, std::memory_order_relaxed);
  }
  if (complete == 0) return 0;  // empty: the chain starts at the genesis value
  // It starts after the '\n' before it, or at the start of the file.
  const uint64_t line_end = complete - 1;
  std::size_t before = std::string::npos;
  do {
    const std::size_t end_index = line_end - tail_start;
    before = end_index == 0 ? std::string::npos : tail.rfind('\n', end_index - 1);
  } while (before == std::string::npos && read_more());
  const std::size_t end_index = line_end - tail_start;
  const std::size_t start_index = before == std::string::npos ? 0 : before + 1;
  chain.advance(std::string_view(tail).substr(start_index, end_index - start_index));
  return complete;
}

AuditWriter::AuditWriter(AuditWriterConfig config) : config_(std::move(config)) {}

AuditWriter::~AuditWriter() {
  stop();
}

void AuditWriter::add_ring(AuditRing& ring) {
  if (started_) throw std::logic_error("AuditWriter::add_ring after start()");
  rings_.push_back(&ring);
}

void AuditWriter::start() {
  if (started_) return;
  auto impl = std::make_unique<Impl>(*this, config_);
  impl->fd = impl->open_file();
  if (impl->fd < 0) {
    throw std::runtime_error("audit log " + config_.path +
                             ": cannot open for writing: " + errno_text(errno));
  }
  impl->file_offset = resume_chain(impl->fd, impl->chain);

  for (const AuditRing* ring : rings_) {
    if (ring->capture() != nullptr)
      impl->max_line =
          std::max(impl->max_line, max_audit_line_bytes(ring->capture()->slot_bytes()));
  }
  impl->spill.resize(impl->max_line);
  // Whole lines only: a buffer holds at least two of the longest lines; page-aligned size.
  impl->buffer_capacity = std::max<std::size_t>(config_.buffer_bytes, 2 * impl->max_line);
  impl->buffer_capacity = (impl->buffer_capacity + 4095) / 4096 * 4096;
  const unsigned buffer_count = std::max(1u, config_.buffers);
  impl->buffers.resize(buffer_count);
  for (std::size_t i = 0; i < buffer_count; ++i) {
    impl->buffers[i].data = static_cast<char*>(std::aligned_alloc(4096, impl->buffer_capacity));
    if (impl->buffers[i].data == nullptr) throw std::bad_alloc();
    impl->free_buffers.push_back(buffer_count - 1 - i);
  }

  std::string note;
  if (config_.force_pwrite) {
    note = "pwrite (io_uring disabled by config)";
  } else {
    // One SQE per buffer is the most in flight; twice that leaves room for resubmissions.
    const int ret = io_uring_queue_init(2 * buffer_count, &impl->uring, 0);
    if (ret == 0) {
      impl->use_uring = true;
      note = "io_uring";
    } else {
      note = "pwrite (io_uring_queue_init: " + errno_text(-ret) + ")";
    }
  }
  {
    std::lock_guard lock(mutex_);
    backend_note_ = note;
  }
  backend_.store(impl->use_uring ? AuditBackend::io_uring : AuditBackend::pwrite,
                 std::memory_order_release);
  impl_ = std::move(impl);
  stop_requested_.store(false, std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    writer_exited_ = false;
  }
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void AuditWriter::run() {
  Impl& impl = *impl_;
  uint64_t completed = 0;
  for (;;) {
    // Read the requests first: a pass that then finds every ring empty has seen every record
    // pushed before the request (push → release head; request → acquire here; pop → acquire).
    const bool stopping = stop_requested_.load(std::memory_order_acquire);
    uint64_t requested;
    {
      std::lock_guard lock(mutex_);
      requested = flush_requested_;
    }
    if (impl.drain(rings_) != 0) continue;
    if (stopping || requested > completed) {
      impl.submit_current();
      impl.wait_all();
      completed = requested;
      {
        std::lock_guard lock(mutex_);
        flush_completed_ = requested;
      }
      flush_done_.notify_all();
      if (stopping) break;
      continue;
    }
    // Idle: push out the partly filled buffer so the log lags by at most one nap.
    impl.submit_current();
    impl.submit_queued();
    impl.reap_ready();
    std::this_thread::sleep_for(std::chrono::microseconds(config_.idle_sleep_us));
  }
  impl.wait_all();
  {
    std::lock_guard lock(mutex_);
    writer_exited_ = true;
    flush_completed_ = flush_requested_;
  }
  flush_done_.notify_all();
}

void AuditWriter::flush() {
  if (!started_) return;
  std::unique_lock lock(mutex_);
  if (writer_exited_) return;
  const uint64_t generation = ++flush_requested_;
  flush_done_.wait(lock, [&] { return flush_completed_ >= generation; });
}

void AuditWriter::stop() {
  if (!started_) return;
  if (thread_.joinable()) {
    stop_requested_.store(true, std::memory_order_release);
    thread_.join();
  }
  impl_.reset();  // closes the file and the ring
  started_ = false;
}

AuditWriterStats AuditWriter::stats() const {
  AuditWriterStats stats;
  stats.records_written = records_written_.load(std::memory_order_relaxed);
  for (const AuditRing* ring : rings_) stats.records_dropped += ring->dropped();
  stats.records_lost = records_lost_.load(std::memory_order_relaxed);
  stats.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  stats.rotations = rotations_.load(std::memory_order_relaxed);
  stats.write_errors = write_errors_.load(std::memory_order_relaxed);
  stats.format_errors = format_errors_.load(std::memory_order_relaxed);
  for (const AuditRing* ring : rings_) {
    if (ring->capture() != nullptr) stats.prompts_dropped += ring->capture()->dropped();
  }
  stats.torn_bytes_cut = torn_bytes_cut_.load(std::memory_order_relaxed);
  return stats;
}

std::string AuditWriter::backend_description() const {
  std::lock_guard lock(mutex_);
  return backend_note_.empty() ? std::string("not started") : backend_note_;
}

}  // namespace sluice
