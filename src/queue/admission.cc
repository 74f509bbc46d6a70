#include "queue/admission.h"

#include "keys/holder_value.h"
#include "keys/key_layout.h"

namespace etcdlock::detail {
namespace {

bool is_reader(const mvccpb::KeyValue& kv) {
  const auto value = decode_holder_value(kv.value());
  return value && value->side == HolderValue::Side::read;
}

}  // namespace

std::int64_t Admission::first_read_limit() const {
  switch (rule_) {
    case Rule::exclusive:
      return 1;
    case Rule::counted:
      return limit_;
    case Rule::shared:
      return kQueuePage;
  }
  return kQueuePage;
}

void Admission::Scan::take(const pb::RangeResponse& page, std::int64_t below) {
  for (const auto& kv : page.kvs()) {
    // Keys of names that extend this one ("a/b" under "a") count as entries,
    // as in etcd's recipe; the inbox of a manager on a nested prefix does not
    // (see keys/key_layout.h).
    if (kv.create_revision() >= below || is_inbox_key(kv.key())) continue;
    switch (admission_.rule()) {
      case Rule::exclusive:
        block(kv);
        decided_ = true;
        return;
      case Rule::counted:
        block(kv);
        if (static_cast<std::int64_t>(blockers_.size()) >= admission_.limit()) {
          decided_ = true;
          return;
        }
        break;
      case Rule::shared:
        if (!is_reader(kv)) {
          block(kv);
          decided_ = true;
          return;
        }
        break;
    }
  }
  if (page.more() && page.kvs_size() > 0) {
    next_below_ = page.kvs(page.kvs_size() - 1).create_revision();
    return;
  }
  // Read to the head of the queue: what was found does not hold us back.
  blockers_.clear();
  blocker_values_.clear();
  decided_ = true;
}

void Admission::Scan::block(const mvccpb::KeyValue& kv) {
  blockers_.push_back({kv.key(), kv.create_revision()});
  blocker_values_.push_back(kv.value());
}

EntryRule entry_rule(std::string_view value) {
  const auto decoded = decode_holder_value(value);
  if (!decoded) return {};
  return {decoded->limit > 0 ? decoded->limit : 0, decoded->side == HolderValue::Side::read};
}

bool admitted_behind(EntryRule rule, std::int64_t ahead, std::int64_t exclusive_ahead) {
  if (rule.limit > 0) return ahead < rule.limit;
  if (rule.reader) return exclusive_ahead == 0;
  return ahead == 0;
}

std::vector<bool> holding_entries(std::span<const std::string* const> values) {
  std::vector<bool> holds;
  holds.reserve(values.size());
  std::int64_t exclusive_ahead = 0;
  for (const std::string* text : values) {
    const auto rule = entry_rule(*text);
    holds.push_back(admitted_behind(rule, static_cast<std::int64_t>(holds.size()), exclusive_ahead));
    if (!rule.reader) ++exclusive_ahead;
  }
  return holds;
}

}  // namespace etcdlock::detail
