#include "sluice/bridge.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <random>
#include <thread>

#include <xxhash.h>

#include "sluice/admission.hpp"
#include "sluice/audit.hpp"
#include "sluice/classify.hpp"
#include "sluice/eal.hpp"
#include "sluice/management.hpp"
#include "sluice/metrics.hpp"
#include "sluice/pipeline.hpp"
#include "sluice/ring_audit_sink.hpp"
#include "sluice/stats.hpp"

namespace sluice {
namespace {

constexpr uint32_t kMaxBurst = 512;
constexpr uint32_t kRedistributeRingSize = 4096;
constexpr uint32_t kExpiryBudgetPerLoop = 8;
constexpr uint32_t kMbufCache = 256;

// The well-known symmetric Toeplitz key (0x6d5a repeated): the hash of (a→b) equals the hash of
// (b→a), so both directions of a flow land in the same queue index on every port.
constexpr uint8_t kSymmetricRssKey[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a};

enum class Distribution { kSingleWorker, kSymmetricRss, kSoftware };

const char* describe(Distribution d) {
  switch (d) {
    case Distribution::kSingleWorker:
      return "one worker (no distribution needed)";
    case Distribution::kSymmetricRss:
      return "symmetric RSS in the NICs";
    default:
      return "software symmetric-hash distributor (the devices have no RSS)";
  }
}

struct Port {
  uint16_t id = 0;
  std::string devargs;
  bool rss = false;
};

Port find_port(const std::string& devargs, const char* role) {
  Port port;
  port.devargs = devargs;
  if (rte_eth_dev_get_port_by_name(port_name(devargs).c_str(), &port.id) != 0) {
    throw StartupError(std::string("dataplane.") + role + "_port: no DPDK port named '" +
                       port_name(devargs) + "' after EAL start-up (devargs '" + devargs + "')");
  }
  return port;
}

void start_port(Port& port, const char* role, const Config& config, rte_mempool* pool) {
  const uint16_t queues = static_cast<uint16_t>(config.dataplane.workers);
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(port.id, &info) != 0) {
    throw StartupError(std::string(role) + " port: cannot read device info");
  }
  if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
    throw StartupError(std::string("dataplane.") + role + "_port '" + port.devargs + "' has " +
                       std::to_string(info.max_rx_queues) + " RX / " +
                       std::to_string(info.max_tx_queues) + " TX queues but workers is " +
                       std::to_string(queues) +
                       " (each worker owns one queue per port; for net_af_packet add qpairs=" +
                       std::to_string(queues) + ")");
  }
  rte_eth_conf conf{};
  const uint64_t rss_types =
      info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
  port.rss = queues > 1 && rss_types != 0;
  if (port.rss) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = const_cast<uint8_t*>(kSymmetricRssKey);
    conf.rx_adv_conf.rss_conf.rss_key_len = sizeof kSymmetricRssKey;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_types;
  }
  const auto check = [&](int rc, const char* what) {
    if (rc < 0) {
      throw StartupError(std::string(role) + " port '" + port.devargs + "': " + what +
                         " failed: " + rte_strerror(-rc));
    }
  };
  check(rte_eth_dev_configure(port.id, queues, queues, &conf), "configure");
  uint16_t rx_ring = static_cast<uint16_t>(config.dataplane.rx_ring_size);
  uint16_t tx_ring = static_cast<uint16_t>(config.dataplane.tx_ring_size);
  check(rte_eth_dev_adjust_nb_rx_tx_desc(port.id, &rx_ring, &tx_ring), "ring size adjustment");
  const int socket = rte_eth_dev_socket_id(port.id);
  for (uint16_t q = 0; q < queues; ++q) {
    check(rte_eth_rx_queue_setup(port.id, q, rx_ring, socket, nullptr, pool), "RX queue setup");
    check(rte_eth_tx_queue_setup(port.id, q, tx_ring, socket, nullptr), "TX queue setup");
  }
  check(rte_eth_dev_start(port.id), "start");
  rte_eth_promiscuous_enable(port.id);  // a bridge sees every MAC; not all devices need it
}

// Per-port, per-worker TX buffering: bursts leave when full or when the drain timer fires.
class BufferedSink final : public PacketSink {
 public:
  BufferedSink(const std::array<uint16_t, 2>& ports, uint16_t queue, uint32_t burst,
               Counters& counters)
      : ports_(ports), queue_(queue), counters_(counters) {
    for (std::size_t s = 0; s < 2; ++s) {
      buffers_[s].reset(static_cast<rte_eth_dev_tx_buffer*>(
          rte_zmalloc("tx_buffer", RTE_ETH_TX_BUFFER_SIZE(burst), 0)));
      if (!buffers_[s]) throw StartupError("cannot allocate TX buffers");
      rte_eth_tx_buffer_init(buffers_[s].get(), static_cast<uint16_t>(burst));
      unsent_context_[s] = {this, s};
      rte_eth_tx_buffer_set_err_callback(buffers_[s].get(), &BufferedSink::on_unsent,
                                         &unsent_context_[s]);
    }
  }

  void send(Side toward, rte_mbuf* mbuf) override {
    const auto s = static_cast<std::size_t>(toward);
    pending_[s].packets += 1;
    pending_[s].bytes += rte_pktmbuf_pkt_len(mbuf);
    // A non-zero return means the buffer was full and went out, this mbuf included.
    if (rte_eth_tx_buffer(ports_[s], queue_, buffers_[s].get(), mbuf) > 0) account(s);
  }

  void flush() {
    for (std::size_t s = 0; s < 2; ++s) {
      rte_eth_tx_buffer_flush(ports_[s], queue_, buffers_[s].get());
      account(s);
    }
  }

 private:
  struct Pending {
    uint64_t packets = 0;
    uint64_t bytes = 0;
  };

  // Counts what left: everything buffered since the last flush, less what the device refused
  // (on_unsent has already taken those out of pending_).
  void account(std::size_t s) {
    const bool client = s == static_cast<std::size_t>(Side::kClient);
    counters_.add(client ? Counter::tx_client_packets : Counter::tx_server_packets,
                  pending_[s].packets);
    counters_.add(client ? Counter::tx_client_bytes : Counter::tx_server_bytes, pending_[s].bytes);
    pending_[s] = {};
  }

  struct UnsentContext {
    BufferedSink* self = nullptr;
    std::size_t side = 0;
  };

  static void on_unsent(rte_mbuf** unsent, uint16_t count, void* argument) {
    const auto& context = *static_cast<UnsentContext*>(argument);
    BufferedSink* self = context.self;
    const std::size_t s = context.side;
    for (uint16_t i = 0; i < count; ++i) {
      self->pending_[s].packets -= 1;
      self->pending_[s].bytes -= rte_pktmbuf_pkt_len(unsent[i]);
      rte_pktmbuf_free(unsent[i]);
    }
    self->counters_.add(Counter::drop_tx_full, count);
  }

  struct Free {
    void operator()(rte_eth_dev_tx_buffer* b) const { rte_free(b); }
  };
  std::array<uint16_t, 2> ports_;
  uint16_t queue_;
  Counters& counters_;
  std::array<std::unique_ptr<rte_eth_dev_tx_buffer, Free>, 2> buffers_;
  std::array<Pending, 2> pending_{};
  std::array<UnsentContext, 2> unsent_context_{};
};

struct WorkerContext;

struct Shared {
  const Config* config = nullptr;
  std::array<uint16_t, 2> ports{};
  Distribution distribution = Distribution::kSingleWorker;
  rte_mempool* pool = nullptr;
  std::atomic<bool>* stop = nullptr;
  uint64_t distribution_seed = 0;
  std::vector<rte_ring*> inboxes;  // software distribution: one multi-producer inbox per worker
  std::vector<std::unique_ptr<WorkerStats>> stats;
  PolicySource* policy = nullptr;
  std::vector<std::unique_ptr<AuditRing>> audit_rings;  // one per worker; empty: no audit file
  int64_t wall_offset_ns = 0;                           // CLOCK_REALTIME − tsc_now_ns()
  std::atomic<bool> draining{false};  // sluicectl drain: refuse new SYNs on inspected ports
};

struct alignas(64) WorkerContext {
  Shared* shared = nullptr;
  uint16_t index = 0;
};

// Software distribution: the symmetric flow hash picks the worker; both directions agree.
uint16_t owner_of(const rte_mbuf* mbuf, const Shared& shared) {
  const std::span<const uint8_t> frame{rte_pktmbuf_mtod(mbuf, const uint8_t*),
                                       rte_pktmbuf_data_len(mbuf)};
  const Classification c = classify(frame);
  if (c.malformed || (c.info.l3 != L3::kIpv4 && c.info.l3 != L3::kIpv6)) return UINT16_MAX;
  const KeyedPacket keyed = make_flow_key(c.info);
  const uint64_t hash =
      XXH3_64bits_withSeed(&keyed.key, sizeof keyed.key, shared.distribution_seed);
  return static_cast<uint16_t>(hash % shared.inboxes.size());
}

int worker_main(void* argument) {
  auto& context = *static_cast<WorkerContext*>(argument);
  Shared& shared = *context.shared;
  const Config& config = *shared.config;
  WorkerStats& stats = *shared.stats[context.index];
  Counters& counters = stats.counters;
  const uint16_t queue = context.index;
  const uint16_t burst = static_cast<uint16_t>(std::min(config.dataplane.burst_size, kMaxBurst));

  const HttpStageConfig stage_config = http_stage_config(config);
  std::unique_ptr<RingAuditSink> audit;
  if (!shared.audit_rings.empty())
    audit = std::make_unique<RingAuditSink>(*shared.audit_rings[context.index]);
  Admission admission(*shared.policy, audit.get(), context.index, shared.wall_offset_ns);
  admission.set_metrics(&stats.admission);
  RequestRecorder recorder(stats.requests, &admission, nullptr, &stats.decisions);
  HttpStage consumer(&stage_config, recorder);
  BufferedSink sink(shared.ports, queue, burst, counters);
  std::random_device entropy;
  const uint64_t seed = (uint64_t{entropy()} << 32) | entropy();
  Pipeline pipeline(config, seed, shared.pool, sink, consumer, counters);

  const uint64_t drain_cycles = rte_get_tsc_hz() / 1'000'000 * config.dataplane.tx_drain_us;
  uint64_t last_drain = rte_rdtsc();
  rte_mbuf* received[kMaxBurst];
  rte_mbuf* mine[2][kMaxBurst];

  while (!shared.stop->load(std::memory_order_relaxed)) {
    const uint64_t now_ns = tsc_now_ns();
    admission.refresh();
    pipeline.set_draining(shared.draining.load(std::memory_order_relaxed));
    for (std::size_t s = 0; s < 2; ++s) {
      const Side side = static_cast<Side>(s);
      const uint16_t count = rte_eth_rx_burst(shared.ports[s], queue, received, burst);
      if (count == 0) continue;
      if (shared.distribution != Distribution::kSoftware) {
        pipeline.process_burst(side, received, count, now_ns);
        continue;
      }
      uint16_t kept = 0;
      for (uint16_t i = 0; i < count; ++i) {
        const uint16_t owner = owner_of(received[i], shared);
        if (owner == UINT16_MAX || owner == context.index) {
          mine[s][kept++] = received[i];
          continue;
        }
        received[i]->port = shared.ports[s];  // remembers the side for the owner
        if (rte_ring_mp_enqueue(shared.inboxes[owner], received[i]) != 0) {
          counters.add(Counter::drop_redistribute_full);
          rte_pktmbuf_free(received[i]);
        } else {
          counters.add(Counter::redistributed_packets);
        }
      }
      pipeline.process_burst(side, mine[s], kept, now_ns);
    }
    if (shared.distribution == Distribution::kSoftware) {
      const unsigned count = rte_ring_sc_dequeue_burst(
          shared.inboxes[context.index], reinterpret_cast<void**>(received), burst, nullptr);
      uint16_t per_side[2] = {0, 0};
      for (unsigned i = 0; i < count; ++i) {
        const std::size_t s = received[i]->port == shared.ports[0] ? 0 : 1;
        mine[s][per_side[s]++] = received[i];
      }
      for (std::size_t s = 0; s < 2; ++s)
        pipeline.process_burst(static_cast<Side>(s), mine[s], per_side[s], now_ns);
    }
    const uint64_t cycles = rte_rdtsc();
    if (cycles - last_drain >= drain_cycles) {
      sink.flush();
      last_drain = cycles;
      pipeline.expire_flows(now_ns, kExpiryBudgetPerLoop);
      stats.active_flows.store(pipeline.active_flows(), std::memory_order_relaxed);
      stats.open_flows.store(pipeline.open_flows(), std::memory_order_relaxed);
    }
  }
  sink.flush();
  pipeline.close_all();
  stats.active_flows.store(0, std::memory_order_relaxed);
  stats.open_flows.store(0, std::memory_order_relaxed);
  return 0;
}

// What the devices themselves count: frames they could not deliver to Sluice (imissed: the RX
// ring was full; rx_nombuf: no mbuf) and errors. Read on the main lcore only.
struct PortTotals {
  uint64_t imissed = 0;
  uint64_t ierrors = 0;
  uint64_t oerrors = 0;
  uint64_t rx_nombuf = 0;
};

PortTotals port_totals(uint16_t port) {
  rte_eth_stats stats{};
  rte_eth_stats_get(port, &stats);
  return {stats.imissed, stats.ierrors, stats.oerrors, stats.rx_nombuf};
}

std::string port_line(const Shared& shared) {
  std::string line;
  const char* names[2] = {"client", "server"};
  for (std::size_t s = 0; s < 2; ++s) {
    const PortTotals t = port_totals(shared.ports[s]);
    if (t.imissed + t.ierrors + t.oerrors + t.rx_nombuf == 0) continue;
    line += std::string(" ") + names[s] + ":missed=" + std::to_string(t.imissed) +
            ",ierrors=" + std::to_string(t.ierrors) + ",oerrors=" + std::to_string(t.oerrors) +
            ",nombuf=" + std::to_string(t.rx_nombuf);
  }
  return line.empty() ? "" : " | nic" + line;
}

std::array<uint64_t, kRequestReasonCount> request_totals(const Shared& shared) {
  std::array<uint64_t, kRequestReasonCount> totals{};
  for (const auto& stats : shared.stats) {
    for (std::size_t i = 0; i < kRequestReasonCount; ++i) totals[i] += stats->requests.get(i);
  }
  return totals;
}

CounterSnapshot snapshot(const Shared& shared, uint64_t* active_flows) {
  CounterSnapshot totals;
  uint64_t flows = 0;
  for (const auto& stats : shared.stats) {
    totals.accumulate(stats->counters);
    flows += stats->active_flows.load(std::memory_order_relaxed);
  }
  if (active_flows != nullptr) *active_flows = flows;
  return totals;
}

double unix_now() {
  timespec wall{};
  clock_gettime(CLOCK_REALTIME, &wall);
  return static_cast<double>(wall.tv_sec) + static_cast<double>(wall.tv_nsec) / 1e9;
}

constexpr std::string_view kControlHelp =
    "commands (one line each; the answer is 'ok' and the output, or 'error: MESSAGE'):\n"
    "  ping              answers pong\n"
    "  version           the daemon's version\n"
    "  metrics           the Prometheus text exposition (as GET /metrics)\n"
    "  reload            reload tiers, unknown_key, identities and rules (as SIGHUP)\n"
    "  drain             refuse new connections on inspected ports (RST to their SYNs); flows "
    "in progress carry on\n"
    "  drain-status      draining, open and active flows, SYNs refused, drained\n"
    "  resume            take new connections again\n"
    "  help              this text\n";

// The main lcore's side of management: reloads (SIGHUP and the control socket), the metrics
// snapshot with its rate window, and the control commands.
class BridgeControl final : public ManagementHandler {
 public:
  BridgeControl(Shared& shared, const BridgeOptions& options, const AuditWriter* audit)
      : shared_(shared), options_(options), audit_(audit), started_wall_(unix_now()) {
    window_.at = Clock::now();
  }

  // Reloads the policy, prints the outcome and returns it: (succeeded, message).
  std::pair<bool, std::string> reload() {
    std::string message;
    bool ok = false;
    if (!options_.reload) {
      message = "reload failed: this sluice has no reload source";
    } else {
      // Built here, off the data path; the workers pick it up at their next burst.
      try {
        std::shared_ptr<const AdmissionPolicy> reloaded = options_.reload();
        shared_.policy->publish(reloaded);
        message = "reloaded: " + reloaded->summary();
        ok = true;
      } catch (const std::exception& e) {
        message = std::string("reload failed, the running policy stays: ") + e.what();
      }
    }
    ++(ok ? reloads_succeeded_ : reloads_failed_);
    (ok ? last_success_ : last_failure_) = unix_now();
    std::printf("sluice: %s\n", message.c_str());
    std::fflush(stdout);
    return {ok, message};
  }

  // Called every loop: about once a second, the rates of the window just ended.
  void sample() {
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - window_.at).count();
    if (seconds < 1.0) return;
    Sample next;
    next.at = now;
    next.counters = snapshot_counters();
    next.requests = decided_requests();
    for (const auto& stats : shared_.stats)
      next.worker_rx.push_back(stats->counters.get(Counter::rx_client_packets) +
                               stats->counters.get(Counter::rx_server_packets));
    if (window_.valid) {
      const auto per_second = [seconds](uint64_t now_value, uint64_t before) {
        return static_cast<double>(now_value - before) / seconds;
      };
      const Counter packets[4] = {Counter::rx_client_packets, Counter::tx_client_packets,
                                  Counter::rx_server_packets, Counter::tx_server_packets};
      const Counter bytes[4] = {Counter::rx_client_bytes, Counter::tx_client_bytes,
                                Counter::rx_server_bytes, Counter::tx_server_bytes};
      for (std::size_t i = 0; i < 4; ++i) {
        rates_.port_pps[i] = per_second(next.counters[packets[i]], window_.counters[packets[i]]);
        rates_.port_bytes_per_s[i] =
            per_second(next.counters[bytes[i]], window_.counters[bytes[i]]);
      }
      rates_.requests_per_s = per_second(next.requests, window_.requests);
      rates_.worker_pps.resize(next.worker_rx.size());
      for (std::size_t w = 0; w < next.worker_rx.size(); ++w)
        rates_.worker_pps[w] = per_second(next.worker_rx[w], window_.worker_rx[w]);
      rates_.window_s = seconds;
    }
    next.valid = true;
    window_ = std::move(next);
  }

  std::string metrics() override { return render_prometheus(snapshot()); }

  ControlReply control(std::string_view command, std::string_view argument) override {
    if (!argument.empty() && command != "help")
      return {false, "'" + std::string(command) + "' takes no argument"};
    if (command == "ping") return {true, "pong\n"};
    if (command == "version") return {true, "sluice " + options_.version + "\n"};
    if (command == "metrics" || command == "stats") return {true, metrics()};
    if (command == "help") return {true, std::string(kControlHelp)};
    if (command == "reload") {
      const auto [ok, message] = reload();
      return {ok, message + "\n"};
    }
    if (command == "drain") {
      const bool already = shared_.draining.exchange(true);
      if (!already) {
        std::printf("sluice: draining: new connections on inspected ports are refused\n");
        std::fflush(stdout);
      }
      return {true, std::string(already ? "already draining" : "draining") + "\n" + drain_status()};
    }
    if (command == "resume") {
      const bool was = shared_.draining.exchange(false);
      if (was) {
        std::printf("sluice: drain ended: taking new connections\n");
        std::fflush(stdout);
      }
      return {true, std::string(was ? "resumed" : "not draining") + "\n" + drain_status()};
    }
    if (command == "drain-status") return {true, drain_status()};
    return {false, "unknown command '" + std::string(command) + "' (try 'help')"};
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Sample {
    Clock::time_point at;
    CounterSnapshot counters;
    uint64_t requests = 0;
    std::vector<uint64_t> worker_rx;
    bool valid = false;
  };
  struct Rates {
    double window_s = 0;
    std::array<double, 4> port_pps{};
    std::array<double, 4> port_bytes_per_s{};
    double requests_per_s = 0;
    std::vector<double> worker_pps;
  };

  CounterSnapshot snapshot_counters() const {
    CounterSnapshot totals;
    for (const auto& stats : shared_.stats) totals.accumulate(stats->counters);
    return totals;
  }
  uint64_t decided_requests() const {
    uint64_t total = 0;
    for (const auto& stats : shared_.stats) {
      for (std::size_t i = 0; i < kRequestReasonCount; ++i)
        if (!is_response_reason(static_cast<RequestReason>(i))) total += stats->requests.get(i);
    }
    return total;
  }

  std::string drain_status() const {
    uint64_t open = 0;
    uint64_t active = 0;
    uint64_t refused = 0;
    for (const auto& stats : shared_.stats) {
      open += stats->open_flows.load(std::memory_order_relaxed);
      active += stats->active_flows.load(std::memory_order_relaxed);
      refused += stats->counters.get(Counter::syns_refused_draining);
    }
    const bool draining = shared_.draining.load();
    return std::string("draining ") + (draining ? "yes" : "no") + "\nopen_flows " +
           std::to_string(open) + "\nactive_flows " + std::to_string(active) + "\nsyns_refused " +
           std::to_string(refused) + "\ndrained " + (draining && open == 0 ? "yes" : "no") + "\n";
  }

  // The escalations in force, read from the identities' shared state (relaxed loads).
  void collect_escalations(MetricsSnapshot& s) const {
    const std::shared_ptr<const AdmissionPolicy> policy = shared_.policy->current();
    const uint64_t now = tsc_now_ns();
    const double wall_now = unix_now();
    for (const IdentityPolicy& identity : policy->identity_policies()) {
      const uint64_t word = identity.escalation_state().escalation.load(std::memory_order_relaxed);
      if (word == 0 || now >= (word >> 8)) continue;
      const uint64_t level = word & 0xff;
      MetricsSnapshot::Escalated e;
      e.identity = identity.name;
      if (level != kSuspendedLevel && level >= 1 && level <= identity.demotions.size())
        e.tier = identity.demotions[level - 1]->tier->name;
      e.until_s = wall_now + static_cast<double>((word >> 8) - now) / 1e9;
      s.escalated.push_back(std::move(e));
    }
    std::sort(s.escalated.begin(), s.escalated.end(),
              [](const auto& a, const auto& b) { return a.until_s < b.until_s; });
  }

  MetricsSnapshot snapshot() const {
    MetricsSnapshot s;
    s.version = options_.version;
    s.start_time_s = started_wall_;
    s.uptime_s = unix_now() - started_wall_;
    s.draining = shared_.draining.load();
    collect_worker_metrics(s, shared_.stats, options_.limiters);
    if (audit_ != nullptr) {
      const AuditWriterStats a = audit_->stats();
      s.audit_enabled = true;
      s.audit_written = a.records_written;
      s.audit_dropped = a.records_dropped;
      s.audit_lost = a.records_lost;
      s.audit_write_errors = a.write_errors;
    }
    s.policy_generation = shared_.policy->generation();
    collect_escalations(s);
    s.reloads_succeeded = reloads_succeeded_;
    s.reloads_failed = reloads_failed_;
    s.last_reload_success_s = last_success_;
    s.last_reload_failure_s = last_failure_;
    for (std::size_t p = 0; p < 2; ++p) {
      const PortTotals t = port_totals(shared_.ports[p]);
      s.ports[p] = {t.imissed, t.ierrors, t.oerrors, t.rx_nombuf};
    }
    s.rate_window_s = rates_.window_s;
    s.port_pps = rates_.port_pps;
    s.port_bytes_per_s = rates_.port_bytes_per_s;
    s.requests_per_s = rates_.requests_per_s;
    for (std::size_t w = 0; w < s.per_worker.size() && w < rates_.worker_pps.size(); ++w)
      s.per_worker[w].rx_pps = rates_.worker_pps[w];
    return s;
  }

  Shared& shared_;
  const BridgeOptions& options_;
  const AuditWriter* audit_;
  double started_wall_;
  uint64_t reloads_succeeded_ = 0;
  uint64_t reloads_failed_ = 0;
  double last_success_ = 0;
  double last_failure_ = 0;
  Sample window_;
  Rates rates_;
};

}  // namespace

int run_bridge(const Config& config, const BridgeOptions& options, std::atomic<bool>& stop) {
  // First, so that a port in use or another daemon on the socket fails before EAL starts.
  std::unique_ptr<ManagementServer> management;
  try {
    management =
        std::make_unique<ManagementServer>(config.management.listen, config.management.socket);
  } catch (const ManagementError& e) {
    throw StartupError(e.what());
  }
  init_eal(bridge_eal_arguments(config, options.extra_eal_args));
  const uint32_t workers = config.dataplane.workers;
  if (rte_lcore_count() < workers + 1) {
    throw StartupError("dataplane.workers is " + std::to_string(workers) + " but EAL has " +
                       std::to_string(rte_lcore_count()) + " lcores (one main + one per worker)");
  }

  if (options.policy == nullptr) throw StartupError("no admission policy given");
  Shared shared;
  shared.config = &config;
  shared.stop = &stop;
  shared.policy = options.policy;
  Port client = find_port(config.dataplane.client_port, "client");
  Port server = find_port(config.dataplane.server_port, "server");
  if (client.id == server.id)
    throw StartupError("dataplane.client_port and server_port are the same port");
  shared.ports = {client.id, server.id};

  // Each worker may hold a full RX ring per port in flight, plus TX buffers and bursts.
  const uint32_t per_worker =
      2 * (config.dataplane.rx_ring_size + config.dataplane.tx_ring_size) + 4 * kMaxBurst;
  const uint32_t mbufs = config.dataplane.mbufs != 0
                             ? config.dataplane.mbufs
                             : workers * per_worker + kRedistributeRingSize * workers + 1024;
  shared.pool =
      rte_pktmbuf_pool_create("sluice_mbufs", mbufs, kMbufCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                              static_cast<int>(rte_socket_id()));
  if (shared.pool == nullptr) {
    throw StartupError("cannot create the mbuf pool of " + std::to_string(mbufs) +
                       " mbufs: " + rte_strerror(rte_errno) +
                       " (raise -m in dataplane.eal_args or lower dataplane.mbufs)");
  }
  start_port(client, "client", config, shared.pool);
  start_port(server, "server", config, shared.pool);

  if (workers == 1)
    shared.distribution = Distribution::kSingleWorker;
  else if (client.rss && server.rss)
    shared.distribution = Distribution::kSymmetricRss;
  else
    shared.distribution = Distribution::kSoftware;
  if (shared.distribution == Distribution::kSoftware) {
    std::random_device entropy;
    shared.distribution_seed = (uint64_t{entropy()} << 32) | entropy();
    for (uint32_t w = 0; w < workers; ++w) {
      const std::string name = "sluice_inbox_" + std::to_string(w);
      rte_ring* ring = rte_ring_create(name.c_str(), kRedistributeRingSize,
                                       static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
      if (ring == nullptr) throw StartupError("cannot create ring " + name);
      shared.inboxes.push_back(ring);
    }
  }
  for (uint32_t w = 0; w < workers; ++w) {
    shared.stats.push_back(std::make_unique<WorkerStats>());
    shared.stats.back()->decisions = DecisionHistogram(rte_get_tsc_hz());  // buckets in cycles
  }

  timespec wall{};
  clock_gettime(CLOCK_REALTIME, &wall);
  shared.wall_offset_ns =
      int64_t{wall.tv_sec} * 1'000'000'000 + wall.tv_nsec - static_cast<int64_t>(tsc_now_ns());
  std::unique_ptr<AuditWriter> audit_writer;
  if (!config.audit.path.empty()) {
    AuditWriterConfig audit_config;
    audit_config.path = config.audit.path;
    audit_config.max_file_bytes = config.audit.max_file_bytes;
    audit_config.keep = config.audit.keep;
    audit_writer = std::make_unique<AuditWriter>(audit_config);
    for (uint32_t w = 0; w < workers; ++w) {
      shared.audit_rings.push_back(std::make_unique<AuditRing>(config.audit.ring_records));
      shared.audit_rings.back()->enable_capture(config.audit.capture, config.audit.capture_slots,
                                                config.audit.capture_bytes);
      audit_writer->add_ring(*shared.audit_rings.back());
    }
    audit_writer->start();
    std::printf("sluice: audit trail %s (%s)\n", config.audit.path.c_str(),
                audit_writer->backend_description().c_str());
    if (config.audit.capture != AuditCapture::kNone)
      std::printf(
          "sluice: audit prompt capture %s: %u slots of %u bytes per worker (%.1f MiB "
          "reserved each, committed as used)\n",
          config.audit.capture == AuditCapture::kAll ? "all" : "flagged",
          config.audit.capture_slots, config.audit.capture_bytes,
          double(config.audit.capture_slots) * config.audit.capture_bytes / (1 << 20));
  }
  std::printf("sluice: admission: %s\n", shared.policy->current()->summary().c_str());

  std::printf("sluice: client port %u (%s), server port %u (%s), %u worker(s), distribution: %s\n",
              client.id, client.devargs.c_str(), server.id, server.devargs.c_str(), workers,
              describe(shared.distribution));

  std::vector<WorkerContext> contexts(workers);
  uint16_t next = 0;
  unsigned lcore = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (next == workers) break;
    contexts[next].shared = &shared;
    contexts[next].index = next;
    if (rte_eal_remote_launch(worker_main, &contexts[next], lcore) != 0) {
      stop.store(true);
      rte_eal_mp_wait_lcore();
      throw StartupError("cannot launch worker on lcore " + std::to_string(lcore));
    }
    ++next;
  }
  BridgeControl control(shared, options, audit_writer.get());
  const std::string http = management->http_address();
  const std::string& socket = management->socket_path();
  std::printf("sluice: management: metrics %s, control socket %s\n",
              http.empty() ? "off" : ("http://" + http + "/metrics").c_str(),
              socket.empty() ? "off" : socket.c_str());
  std::printf("sluice: ready\n");
  std::fflush(stdout);

  // The main lcore: stats only.
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto last_line = started;
  CounterSnapshot before;
  const double interval = config.stats.interval_s;
  while (!stop.load()) {
    // Serves the metrics and control listeners for up to 50 ms (a signal ends it early).
    management->poll(std::chrono::milliseconds(50), control);
    control.sample();
    if (options.reload_requested != nullptr && options.reload_requested->exchange(false) &&
        options.reload) {
      control.reload();
    }
    const auto now = Clock::now();
    if (options.duration_s > 0 &&
        std::chrono::duration<double>(now - started).count() >= options.duration_s) {
      stop.store(true);
    }
    const double since = std::chrono::duration<double>(now - last_line).count();
    if (interval > 0 && since >= interval) {
      uint64_t flows = 0;
      const CounterSnapshot current = snapshot(shared, &flows);
      const std::array<uint64_t, kRequestReasonCount> requests = request_totals(shared);
      std::printf("%s%s%s\n", live_stats_line(current, before, since, flows).c_str(),
                  request_line(requests).c_str(), port_line(shared).c_str());
      std::fflush(stdout);
      before = current;
      last_line = now;
    }
  }
  rte_eal_mp_wait_lcore();
  management.reset();  // the socket file goes now, not after the summary
  std::vector<std::pair<std::string, uint64_t>> gauges;
  if (audit_writer) {
    audit_writer->stop();
    const AuditWriterStats a = audit_writer->stats();
    gauges.insert(gauges.end(), {{"audit_records_written", a.records_written},
                                 {"audit_records_dropped", a.records_dropped},
                                 {"audit_records_lost", a.records_lost},
                                 {"audit_write_errors", a.write_errors}});
  }

  const char* names[2] = {"client", "server"};
  for (std::size_t s = 0; s < 2; ++s) {
    const PortTotals t = port_totals(shared.ports[s]);
    const std::string prefix = std::string(names[s]) + "_port_";
    gauges.insert(gauges.end(), {{prefix + "imissed", t.imissed},
                                 {prefix + "ierrors", t.ierrors},
                                 {prefix + "oerrors", t.oerrors},
                                 {prefix + "rx_nombuf", t.rx_nombuf}});
  }
  for (uint16_t id : shared.ports) rte_eth_dev_stop(id);
  const uint64_t in_use = rte_mempool_in_use_count(shared.pool);
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("sluice: stopped after %.1f s\n", seconds);
  for (auto& gauge : request_gauges(request_totals(shared))) gauges.push_back(std::move(gauge));
  gauges.insert(gauges.end(), {{"workers", workers}, {"mbufs_in_use_at_exit", in_use}});
  print_summary(stdout, snapshot(shared, nullptr), gauges);
  for (uint16_t id : shared.ports) rte_eth_dev_close(id);
  for (rte_ring* ring : shared.inboxes) rte_ring_free(ring);
  rte_mempool_free(shared.pool);
  rte_eal_cleanup();
  return in_use == 0 ? 0 : 3;
}

}  // namespace sluice
