#include "sluice/request_recorder.hpp"

#include <rte_cycles.h>

namespace sluice {

void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
}

void RequestRecorder::on_flow_open(uint32_t flow_id, const FlowEndpoints& endpoints) {
  if (next_ != nullptr) next_->on_flow_open(flow_id, endpoints);
}

void RequestRecorder::on_flow_close(uint32_t flow_id) {
  if (next_ != nullptr) next_->on_flow_close(flow_id);
  if (prompts_ != nullptr) pending_.erase(flow_id);
}

Refusal RequestRecorder::on_request_head(uint32_t flow_id, const RequestHead& head,
                                         uint64_t now_ns) {
  const uint64_t started = decisions_ != nullptr ? rte_rdtsc() : 0;
  const Refusal refusal =
      next_ != nullptr ? next_->on_request_head(flow_id, head, now_ns) : Refusal{};
  if (refusal.refused()) {
    if (decisions_ != nullptr) decisions_->record(rte_rdtsc() - started);
    counts_.add(refusal.reason);
  }
  if (prompts_ == nullptr) return refusal;
  Pending& pending = pending_[flow_id];
  pending.method = head.method;
  pending.target = head.target;
  pending.text.clear();
  if (refusal.refused()) {
    RequestOutcome outcome;
    outcome.reason = refusal.reason;
    write_prompt_line(flow_id, outcome, refusal.reason);
  }
  return refusal;
}

void RequestRecorder::on_prompt_text(uint32_t flow_id, std::string_view canonical) {
  if (next_ != nullptr) next_->on_prompt_text(flow_id, canonical);
  if (prompts_ != nullptr) pending_[flow_id].text += canonical;
}

// Scanned, not recorded: --prompts writes the prompt as the first view has it.
void RequestRecorder::on_prompt_joined_text(uint32_t flow_id, std::string_view canonical) {
  if (next_ != nullptr) next_->on_prompt_joined_text(flow_id, canonical);
}

Refusal RequestRecorder::on_request_end(uint32_t flow_id, const RequestOutcome& outcome,
                                        uint64_t now_ns) {
  const uint64_t started = decisions_ != nullptr ? rte_rdtsc() : 0;
  const Refusal refusal =
      next_ != nullptr ? next_->on_request_end(flow_id, outcome, now_ns) : Refusal{};
  if (decisions_ != nullptr) decisions_->record(rte_rdtsc() - started);
  const RequestReason final_reason =
      outcome.reason != RequestReason::ok ? outcome.reason : refusal.reason;
  counts_.add(final_reason);
  if (prompts_ != nullptr) write_prompt_line(flow_id, outcome, final_reason);
  return refusal;
}

void RequestRecorder::write_prompt_line(uint32_t flow_id, const RequestOutcome& outcome,
                                        RequestReason final_reason) {
  const Pending pending = pending_[flow_id];  // empty when refused before its head was complete
  pending_.erase(flow_id);
  const RequestReasonInfo& reason = info_of(final_reason);
  std::string line = "{\"flow\":" + std::to_string(flow_id) +
                     ",\"request\":" + std::to_string(outcome.sequence) + ",\"method\":\"";
  append_json_escaped(line, pending.method);
  line += "\",\"target\":\"";
  append_json_escaped(line, pending.target);
  line += "\",\"reason\":\"" + std::string(reason.name) +
          "\",\"status\":" + std::to_string(reason.status);
  if (outcome.fields != nullptr) {
    line += ",\"model\":\"";
    append_json_escaped(line, outcome.fields->model);
    line += "\"";
    if (outcome.fields->prompt_token_ids) line += ",\"prompt_token_ids\":true";
  }
  line += ",\"body_bytes\":" + std::to_string(outcome.body_bytes) +
          ",\"tokens_estimate\":" + std::to_string(outcome.token_estimate) + ",\"text\":\"";
  append_json_escaped(line, pending.text);
  line += "\"}\n";
  std::fwrite(line.data(), 1, line.size(), prompts_);
}

bool RequestRecorder::on_header_field(uint32_t flow_id, std::string_view lower_name) {
  return next_ != nullptr && next_->on_header_field(flow_id, lower_name);
}

void RequestRecorder::on_header_value(uint32_t flow_id, std::string_view bytes) {
  if (next_ != nullptr) next_->on_header_value(flow_id, bytes);
}

void RequestRecorder::on_header_end(uint32_t flow_id) {
  if (next_ != nullptr) next_->on_header_end(flow_id);
}

bool RequestRecorder::on_response_head(uint32_t flow_id, const ResponseHead& head) {
  return next_ != nullptr && next_->on_response_head(flow_id, head);
}

Refusal RequestRecorder::on_completion_text(uint32_t flow_id, std::string_view canonical) {
  const Refusal refusal =
      next_ != nullptr ? next_->on_completion_text(flow_id, canonical) : Refusal{};
  if (refusal.refused()) counts_.add(refusal.reason);
  return refusal;
}

void RequestRecorder::on_completion_select(uint32_t flow_id, uint8_t text) {
  if (next_ != nullptr) next_->on_completion_select(flow_id, text);
}

Refusal RequestRecorder::on_completion_segment_end(uint32_t flow_id, std::string_view held) {
  const Refusal refusal =
      next_ != nullptr ? next_->on_completion_segment_end(flow_id, held) : Refusal{};
  if (refusal.refused()) counts_.add(refusal.reason);
  return refusal;
}

Refusal RequestRecorder::on_completion_end(uint32_t flow_id, bool readable) {
  const Refusal refusal =
      next_ != nullptr ? next_->on_completion_end(flow_id, readable) : Refusal{};
  if (refusal.refused()) counts_.add(refusal.reason);
  return refusal;
}

void RequestRecorder::on_response_end(uint32_t flow_id, const ResponseOutcome& response,
                                      uint64_t now_ns) {
  if (next_ != nullptr) next_->on_response_end(flow_id, response, now_ns);
}

}  // namespace sluice
