#include "queue/guarded_write.h"

#include "etcd/lost_replies.h"

namespace etcdlock::detail {

bool guarded_put(const etcd::Client& client, std::optional<pb::TxnRequest> guard, std::string_view key,
                 std::string_view value) {
  if (!guard) return false;
  auto* put = guard->add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  return client.txn(*guard, client.command_deadline(), etcd::write_site::guarded_write).succeeded();
}

bool guarded_delete(const etcd::Client& client, std::optional<pb::TxnRequest> guard, std::string_view key) {
  if (!guard) return false;
  guard->add_success()->mutable_request_delete_range()->set_key(std::string(key));
  return client.txn(*guard, client.command_deadline(), etcd::write_site::guarded_write).succeeded();
}

std::optional<pb::TxnRequest> while_standing(const Hold& hold) {
  if (hold.lost()) return std::nullopt;
  return while_created_at(hold.entry().key, hold.entry().revision);
}

}  // namespace etcdlock::detail
