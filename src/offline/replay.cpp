#include "sluice/replay.hpp"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "sluice/admission.hpp"
#include "sluice/audit.hpp"
#include "sluice/classify.hpp"
#include "sluice/eal.hpp"
#include "sluice/flow_table.hpp"
#include "sluice/pipeline.hpp"
#include "sluice/request_recorder.hpp"
#include "sluice/stats.hpp"
#include "sluice/tcp_tracker.hpp"

namespace sluice {
namespace {

// Fixed, so that two runs build the same tables: replay output must be reproducible.
constexpr uint64_t kReplayHashSeed = 0x5eed5eed5eed5eedULL;
// Big enough for any frame a capture may hold, GRO super-frames included.
constexpr uint16_t kMbufDataRoom = UINT16_MAX - RTE_PKTMBUF_HEADROOM;
constexpr unsigned kReplayMbufs = 255;

// A replay loses no record: when the ring is full it waits for the writer to drain it.
class LosslessSink final : public AuditSink {
 public:
  LosslessSink(AuditRing& ring, AuditWriter& writer) : ring_(ring), writer_(writer) {}
  void write(const AuditRecord& record) override {
    while (!ring_.try_push(record)) writer_.flush();
  }
  AuditCapturePool* capture_pool() override { return ring_.capture(); }

 private:
  AuditRing& ring_;
  AuditWriter& writer_;
};

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
struct DumperCloser {
  void operator()(pcap_dumper_t* d) const { pcap_dump_close(d); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;
using DumperHandle = std::unique_ptr<pcap_dumper_t, DumperCloser>;

PcapHandle open_capture(const std::string& path) {
  char error[PCAP_ERRBUF_SIZE] = {};
  PcapHandle handle(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, error));
  if (!handle) throw StartupError(path + ": cannot read capture: " + error);
  if (pcap_datalink(handle.get()) != DLT_EN10MB) {
    throw StartupError(path + ": link type " + std::to_string(pcap_datalink(handle.get())) +
                       " is not Ethernet (DLT_EN10MB); only Ethernet captures can be replayed");
  }
  return handle;
}

struct KeyLess {
  bool operator()(const FlowKey& a, const FlowKey& b) const {
    return std::memcmp(&a, &b, sizeof a) < 0;
  }
};

// Which side each packet arrived on, learnt in a first pass over the capture.
class SideMap {
 public:
  SideMap(const InspectConfig& inspect, std::vector<Cidr> server_nets)
      : inspect_(inspect), server_nets_(std::move(server_nets)) {}

  void learn(std::span<const uint8_t> frame) {
    const Classification c = classify(frame);
    if (c.malformed || !c.info.is_tcp()) return;
    const PacketInfo& info = c.info;
    const uint8_t flags = info.tcp_flags & (tcp_flag::kSyn | tcp_flag::kAck);
    if (flags == tcp_flag::kSyn) {
      const KeyedPacket keyed = make_flow_key(info);
      initiator_is_low_.emplace(keyed.key, keyed.source_is_low);
    } else if (flags == (tcp_flag::kSyn | tcp_flag::kAck) &&
               inspect_.is_inspected_port(info.src_port)) {
      servers_.insert(info.src);
    }
  }

  Side side_of(std::span<const uint8_t> frame) const {
    const Classification c = classify(frame);
    const PacketInfo& info = c.info;
    if (!c.malformed && info.is_tcp()) {
      const KeyedPacket keyed = make_flow_key(info);
      const auto found = initiator_is_low_.find(keyed.key);
      if (found != initiator_is_low_.end()) {
        return keyed.source_is_low == found->second ? Side::kClient : Side::kServer;
      }
    }
    if (info.l3 == L3::kNone) return Side::kClient;
    if (servers_.contains(info.src)) return Side::kServer;
    const uint8_t family = info.l3 == L3::kIpv6 ? 6 : 4;
    for (const Cidr& net : server_nets_) {
      if (net.contains(info.src, family)) return Side::kServer;
    }
    return Side::kClient;
  }

 private:
  const InspectConfig& inspect_;
  std::vector<Cidr> server_nets_;
  std::map<FlowKey, bool, KeyLess> initiator_is_low_;
  std::set<IpAddress> servers_;
};

class CaptureSink final : public PacketSink {
 public:
  CaptureSink(pcap_dumper_t* to_client, pcap_dumper_t* to_server, Counters& counters)
      : outputs_{to_client, to_server}, counters_(counters) {}

  void set_time(const timeval& stamp) { stamp_ = stamp; }

  void send(Side toward, rte_mbuf* mbuf) override {
    pcap_pkthdr header{};
    header.ts = stamp_;
    header.caplen = header.len = rte_pktmbuf_data_len(mbuf);
    pcap_dump(reinterpret_cast<u_char*>(outputs_[static_cast<std::size_t>(toward)]), &header,
              rte_pktmbuf_mtod(mbuf, const u_char*));
    const bool client = toward == Side::kClient;
    counters_.add(client ? Counter::tx_client_packets : Counter::tx_server_packets);
    counters_.add(client ? Counter::tx_client_bytes : Counter::tx_server_bytes, header.len);
    rte_pktmbuf_free(mbuf);
  }

 private:
  std::array<pcap_dumper_t*, 2> outputs_;
  Counters& counters_;
  timeval stamp_{};
};

// Builds the policy of `point` and publishes it, as the live appliance does on SIGHUP; a bad file
// leaves the running policy in place. Returns whether it published.
bool reload_policy(const ReplayReload& point, const ReplayOptions& options, PolicySource& source) {
  try {
    std::shared_ptr<const AdmissionPolicy> next = options.reload(point, *source.current());
    source.publish(next);
    if (!options.quiet)
      std::fprintf(stderr, "sluice replay: reloaded at packet %" PRIu64 ": %s\n", point.packet,
                   next->summary().c_str());
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "sluice replay: reload at packet %" PRIu64
                 " failed, the running policy stays: %s\n",
                 point.packet, e.what());
    return false;
  }
}

DumperHandle open_output(pcap_t* dead, const std::string& path) {
  DumperHandle dumper(pcap_dump_open(dead, path.c_str()));
  if (!dumper) throw StartupError(path + ": cannot write capture: " + pcap_geterr(dead));
  return dumper;
}

}  // namespace

bool Cidr::contains(const IpAddress& candidate, uint8_t candidate_family) const {
  if (candidate_family != family) return false;
  for (uint8_t bit = 0; bit < prefix; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((candidate[bit / 8] & mask) != (address[bit / 8] & mask)) return false;
  }
  return true;
}

Cidr parse_cidr(const std::string& text) {
  const std::size_t slash = text.find('/');
  const std::string address = text.substr(0, slash);
  Cidr cidr;
  if (inet_pton(AF_INET, address.c_str(), cidr.address.data()) == 1) {
    cidr.family = 4;
  } else if (inet_pton(AF_INET6, address.c_str(), cidr.address.data()) == 1) {
    cidr.family = 6;
  } else {
    throw std::invalid_argument("'" + text +
                                "' is not an IPv4 or IPv6 network (expected e.g. 198.18.0.0/15)");
  }
  const int max_prefix = cidr.family == 4 ? 32 : 128;
  int prefix = max_prefix;
  if (slash != std::string::npos) {
    const std::string digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(digits) > max_prefix) {
      throw std::invalid_argument("'" + text + "': prefix length must be 0.." +
                                  std::to_string(max_prefix));
    }
    prefix = std::stoi(digits);
  }
  cidr.prefix = static_cast<uint8_t>(prefix);
  return cidr;
}

int run_replay(const Config& config, const ReplayOptions& options) {
  const auto out_of_order = std::adjacent_find(
      options.reloads.begin(), options.reloads.end(),
      [](const ReplayReload& a, const ReplayReload& b) { return a.packet >= b.packet; });
  if (out_of_order != options.reloads.end() || (!options.reloads.empty() && !options.reload))
    throw StartupError("reload points must come in increasing packet order, with a reloader");
  SideMap sides(config.inspect, options.server_nets);
  uint64_t packets = 0;
  {
    PcapHandle first_pass = open_capture(options.input);
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    while (pcap_next_ex(first_pass.get(), &header, &data) == 1) sides.learn({data, header->caplen});
  }

  init_eal(replay_eal_arguments());
  rte_mempool* pool = rte_pktmbuf_pool_create("replay_mbufs", kReplayMbufs, 0, 0,
                                              kMbufDataRoom + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  if (pool == nullptr)
    throw StartupError(std::string("cannot create the mbuf pool: ") + rte_strerror(rte_errno));
  const unsigned in_use_before = rte_mempool_in_use_count(pool);

  PcapHandle input = open_capture(options.input);
  PcapHandle dead(
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO));
  DumperHandle to_client = open_output(dead.get(), options.out_client);
  DumperHandle to_server = open_output(dead.get(), options.out_server);

  Counters counters;
  RequestCounts requests;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> prompts(nullptr, &std::fclose);
  if (!options.prompts.empty()) {
    prompts.reset(std::fopen(options.prompts.c_str(), "w"));
    if (!prompts) throw StartupError(options.prompts + ": cannot write: " + std::strerror(errno));
  }
  std::unique_ptr<AuditRing> audit_ring;
  std::unique_ptr<AuditWriter> audit_writer;
  std::unique_ptr<LosslessSink> audit_sink;
  if (!options.audit.empty()) {
    // A replay's trail starts afresh, like its output captures.
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> truncate(std::fopen(options.audit.c_str(), "w"),
                                                             &std::fclose);
    if (!truncate) throw StartupError(options.audit + ": cannot write: " + std::strerror(errno));
    AuditWriterConfig audit_config;
    audit_config.path = options.audit;
    audit_config.max_file_bytes = uint64_t{1} << 40;  // one file, however long the capture
    audit_ring = std::make_unique<AuditRing>(4096);
    audit_ring->enable_capture(config.audit.capture, config.audit.capture_slots,
                               config.audit.capture_bytes);
    audit_writer = std::make_unique<AuditWriter>(audit_config);
    // Lossless: with no slot free, wait for the writer to hand back those it has written.
    if (AuditCapturePool* capture = audit_ring->capture())
      capture->set_refill([writer = audit_writer.get()] { writer->flush(); });
    audit_writer->add_ring(*audit_ring);
    audit_writer->start();
    audit_sink = std::make_unique<LosslessSink>(*audit_ring, *audit_writer);
  }
  // The data path's clock counts from boot (the limiters rely on it staying below 2^60 ns); a
  // capture's is Unix time. So the pipeline's `now` is the time since the first packet, plus
  // one second, and the audit records get the packets' own Unix time back through the offset.
  int64_t first_packet_ns = -1;
  constexpr int64_t kReplayClockStartNs = 1'000'000'000;
  {
    PcapHandle peek = open_capture(options.input);
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    if (pcap_next_ex(peek.get(), &header, &data) == 1)
      first_packet_ns = int64_t{header->ts.tv_sec} * 1'000'000'000 + header->ts.tv_usec;
  }
  const int64_t clock_offset_ns = first_packet_ns < 0 ? 0 : first_packet_ns - kReplayClockStartNs;
  PolicySource policy_source(options.policy);
  Admission admission(policy_source, audit_sink.get(), 0, clock_offset_ns);
  const HttpStageConfig stage_config = http_stage_config(config);
  RequestRecorder recorder(requests, &admission, prompts.get());
  HttpStage consumer(&stage_config, recorder);
  CaptureSink sink(to_client.get(), to_server.get(), counters);
  Pipeline pipeline(config, kReplayHashSeed, pool, sink, consumer, counters);
  uint64_t truncated = 0;
  uint64_t reloads_done = 0;
  uint64_t reloads_failed = 0;
  auto next_reload = options.reloads.begin();
  {
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    int status = 0;
    while ((status = pcap_next_ex(input.get(), &header, &data)) == 1) {
      ++packets;
      if (header->caplen < header->len) ++truncated;
      const std::span<const uint8_t> frame{data,
                                           std::min<std::size_t>(header->caplen, kMbufDataRoom)};
      // With nanosecond precision, libpcap puts nanoseconds in tv_usec.
      const int64_t packet_ns = int64_t{header->ts.tv_sec} * 1'000'000'000 + header->ts.tv_usec;
      // Earlier than the first packet (a capture out of order): the clock's start.
      const uint64_t now_ns = static_cast<uint64_t>(
          std::max<int64_t>(packet_ns - clock_offset_ns, kReplayClockStartNs));
      rte_mbuf* mbuf = rte_pktmbuf_alloc(pool);
      if (mbuf == nullptr) throw StartupError("mbuf pool exhausted during replay (an mbuf leak)");
      std::memcpy(rte_pktmbuf_append(mbuf, static_cast<uint16_t>(frame.size())), frame.data(),
                  frame.size());
      sink.set_time(header->ts);
      for (; next_reload != options.reloads.end() && next_reload->packet == packets; ++next_reload)
        ++(reload_policy(*next_reload, options, policy_source) ? reloads_done : reloads_failed);
      admission.refresh();  // once per burst, as a live worker does
      pipeline.expire_flows(now_ns, 64);
      Side side = sides.side_of(frame);
      for (const ReplayArrival& arrival : options.arrivals) {
        if (arrival.packet == packets) side = arrival.server ? Side::kServer : Side::kClient;
      }
      pipeline.process_burst(side, &mbuf, 1, now_ns);
    }
    if (status == PCAP_ERROR) throw StartupError(options.input + ": " + pcap_geterr(input.get()));
  }
  for (; next_reload != options.reloads.end(); ++next_reload)
    std::fprintf(stderr,
                 "sluice replay: no reload at packet %" PRIu64 ": the capture has %" PRIu64
                 " packets\n",
                 next_reload->packet, packets);
  pipeline.close_all();
  uint64_t audit_written = 0;
  if (audit_writer) {
    audit_writer->stop();
    const AuditWriterStats a = audit_writer->stats();
    audit_written = a.records_written;
    if (a.write_errors != 0 || a.records_lost != 0)
      throw StartupError(options.audit + ": " + std::to_string(a.write_errors) + " write errors, " +
                         std::to_string(a.records_lost) + " records lost");
  }
  to_client.reset();
  to_server.reset();
  const unsigned in_use_after = rte_mempool_in_use_count(pool) - in_use_before;

  if (!options.quiet) {
    CounterSnapshot totals;
    totals.accumulate(counters);
    std::vector<std::pair<std::string, uint64_t>> gauges = request_gauges(requests.by_reason);
    if (audit_writer) gauges.emplace_back("audit_records_written", audit_written);
    gauges.insert(gauges.end(), {{"policy_reloads", reloads_done},
                                 {"policy_reload_failures", reloads_failed},
                                 {"policy_switches", admission.stats().policy_switches}});
    gauges.insert(gauges.end(), {{"packets_read", packets},
                                 {"packets_truncated_in_capture", truncated},
                                 {"mbufs_in_use_after_run", in_use_after}});
    print_summary(stdout, totals, gauges);
  }
  rte_mempool_free(pool);
  rte_eal_cleanup();
  return in_use_after == 0 ? 0 : 3;
}

}  // namespace sluice
