#include "storage/ledger.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "crypto/hash.h"
#include "crypto/secret.h"
#include "storage/key_encoding.h"

namespace phivault::storage {
namespace {

// A group stops growing at this many requests or bytes of changes, so one huge group cannot
// hold everybody's latency hostage; the first request always goes in.
constexpr size_t kMaxGroupRequests = 1024;
constexpr size_t kMaxGroupBytes = 32ull << 20;
constexpr size_t kHeadBytes = 8 + 32;

int64_t NowUnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Where one entry is indexed: its index keys and the head keys of its patient and user chains.
struct IndexKeys {
  std::string patient_prefix;  // "ap" bid(32), or "" if the entry names no patient
  std::string patient_head;    // "hp" bid(32), or ""
  std::string user_prefix;     // "au" user 0x00
  std::string user_head;       // "hu" user
};

// InvalidArgument if the entry cannot be indexed unambiguously.
StatusOr<IndexKeys> IndexKeysOf(const AuditEntry& e) {
  if (e.user.find('\0') != std::string::npos) {
    return InvalidArgument("audit user must not contain NUL");
  }
  IndexKeys k;
  if (!e.patient_bid.empty()) {
    auto bid = crypto::HexDecode(e.patient_bid);
    if (!bid.ok() || bid->size() != 32) {
      return InvalidArgument("audit patient_bid must be 64 hex digits");
    }
    k.patient_prefix = "ap" + *bid;
    k.patient_head = "hp" + *bid;
  }
  k.user_prefix = "au" + e.user + std::string(1, '\0');
  k.user_head = "hu" + e.user;
  return k;
}

// A chain head value: BE64(seq).
StatusOr<uint64_t> DecodeHead(std::string_view value) {
  if (value.size() != 8) return DataLoss("an audit chain head is malformed");
  return ReadBigEndian64(value);
}

// What a queued request waits for: the leader of its group to finish it, or to hand it the lead.
enum PendingState : int { kWaiting = 0, kDone, kLead };

// One entry to commit, with the changes that go in its batch.
struct Item {
  WriteBatch changes;
  AuditEntry entry;
  bool rejected = false;    // failed on its own (bad entry); the rest of its group went ahead
  bool audit_only = false;  // no changes: may be written into the disk reserve (WriteClass)
  StatusOr<uint64_t> result = Internal("ledger request was not processed");
};

// One caller's request in the queue: one item (Commit) or several in order (CommitAll), which
// always go into the same group.
struct Pending {
  Item* items = nullptr;
  size_t count = 0;
  size_t bytes = 0;  // of every item's changes
  // Set once, by a leader, after the items' results are final (release); waited on without
  // LedgerImpl::mu_, so that a woken follower returns at once instead of queueing for the mutex
  // behind the next group's leader.
  std::atomic<int> state{kWaiting};
};

class LedgerImpl final : public Ledger {
 public:
  LedgerImpl(Store& store, LedgerObserver* observer, uint64_t last_seq, std::string last_hash,
             int64_t last_time_us)
      : store_(store),
        observer_(observer),
        last_seq_(last_seq),
        last_hash_(std::move(last_hash)),
        last_time_us_(last_time_us),
        size_(last_seq) {}

  StatusOr<uint64_t> Commit(WriteBatch changes, AuditEntry entry) override {
    Item item;
    item.audit_only = changes.empty();
    item.changes = std::move(changes);
    item.entry = std::move(entry);
    Pending p;
    p.items = &item;
    p.count = 1;
    p.bytes = item.changes.bytes();
    Run(p);
    return std::move(item.result);
  }

  std::vector<StatusOr<uint64_t>> CommitAll(
      std::vector<std::pair<WriteBatch, AuditEntry>> commits) override {
    std::vector<StatusOr<uint64_t>> out;
    if (commits.empty()) return out;
    std::vector<Item> items(commits.size());
    Pending p;
    for (size_t i = 0; i < commits.size(); ++i) {
      items[i].audit_only = commits[i].first.empty();
      items[i].changes = std::move(commits[i].first);
      items[i].entry = std::move(commits[i].second);
      p.bytes += items[i].changes.bytes();
    }
    p.items = items.data();
    p.count = items.size();
    Run(p);
    out.reserve(items.size());
    for (Item& item : items) out.push_back(std::move(item.result));
    return out;
  }

  uint64_t size() const override { return size_.load(std::memory_order_acquire); }

 private:
  // Queues `p` and returns once its items are final: written by this thread as leader of its
  // group, or by the leader of the group it joined.
  void Run(Pending& p) {
    MutexLock lock(mu_);
    const bool leads = queue_.empty();
    queue_.push_back(&p);
    if (!leads) {
      lock.Unlock();
      int state = kWaiting;
      while ((state = p.state.load(std::memory_order_acquire)) == kWaiting) {
        p.state.wait(kWaiting, std::memory_order_acquire);
      }
      if (state == kDone) return;
      lock.Lock();
    }

    // This thread leads: it takes the requests queued so far and writes them as one group.
    std::vector<Pending*> group;
    size_t requests = 0;
    size_t bytes = 0;
    for (Pending* q : queue_) {
      if (!group.empty() &&
          (requests + q->count > kMaxGroupRequests || bytes + q->bytes > kMaxGroupBytes)) {
        break;
      }
      requests += q->count;
      bytes += q->bytes;
      group.push_back(q);
    }
    lock.Unlock();
    std::vector<Item*> items;
    items.reserve(requests);
    for (Pending* q : group) {
      for (size_t i = 0; i < q->count; ++i) items.push_back(&q->items[i]);
    }
    CommitGroup(items);
    lock.Lock();
    for (size_t i = 0; i < group.size(); ++i) queue_.pop_front();
    Pending* const next = queue_.empty() ? nullptr : queue_.front();
    lock.Unlock();
    // A follower's Pending lives on its stack and may be gone as soon as its state is stored:
    // nothing of it is read after that (notify_one only wakes the address's waiters; the atomic
    // itself is not touched). The next leader is woken last, so that requests arriving while the
    // followers are woken still join its group (starting it first made groups smaller: more
    // syncs and more CPU per request).
    for (Pending* q : group) {
      if (q == &p) continue;
      std::atomic<int>& state = q->state;
      state.store(kDone, std::memory_order_release);
      state.notify_one();
    }
    if (next != nullptr) {
      next->state.store(kLead, std::memory_order_release);
      next->state.notify_one();
    }
  }

  // Runs on the leader only, so last_* need no lock: leaders are serialised by the queue.
  void CommitGroup(const std::vector<Item*>& group) {
    const int64_t now = std::max(NowUnixMicros(), last_time_us_);
    uint64_t seq = last_seq_;
    std::string hash = last_hash_;
    WriteBatch batch;
    std::vector<Item*> included;
    Status failure;
    bool any_changes = false;
    heads_in_group_.clear();
    for (Item* p : group) {
      AuditEntry& e = p->entry;
      e.seq = seq + 1;
      e.time_unix_us = now;
      e.prev_hash = seq == 0 ? "" : crypto::HexEncode(hash);
      StatusOr<std::string> bytes = Internal("not encoded");
      auto keys = IndexKeysOf(e);
      Status indexed = keys.status();
      if (indexed.ok() && !keys->patient_head.empty())
        indexed = Link(keys->patient_head, e.patient_prev);
      if (indexed.ok()) indexed = Link(keys->user_head, e.user_prev);
      if (indexed.ok()) {
        bytes = EncodeAuditEntry(e);
        indexed = bytes.status();
      }
      if (!indexed.ok()) {
        p->result = indexed;  // only this request fails; its sequence number is reused
        p->rejected = true;
        continue;
      }
      WriteBatch own;
      const std::string seq_key = BigEndian64(e.seq);
      if (!keys->patient_head.empty()) {
        own.Put(Cf::kIndexes, keys->patient_prefix + seq_key, "");
        heads_in_group_[keys->patient_head] = e.seq;
      }
      own.Put(Cf::kIndexes, keys->user_prefix + seq_key, "");
      heads_in_group_[keys->user_head] = e.seq;
      if (observer_ != nullptr) {
        failure = observer_->OnAppend(e.seq, *bytes, own);
        if (!failure.ok()) break;
      }
      any_changes = any_changes || !p->audit_only;
      batch.Append(std::move(p->changes));
      batch.Put(Cf::kAudit, AuditKey(e.seq), *bytes);
      batch.Append(std::move(own));
      hash = std::string(crypto::AsView(crypto::Sha256(*bytes)));
      seq = e.seq;
      included.push_back(p);
    }

    if (failure.ok() && !included.empty()) {
      for (const auto& [key, head] : heads_in_group_) {
        batch.Put(Cf::kIndexes, key, BigEndian64(head));
      }
      batch.Put(Cf::kState, std::string(kLedgerHeadKey), BigEndian64(seq) + hash);
      if (!any_changes) batch.set_write_class(WriteClass::kAuditOnly);
      failure = store_.Write(batch, /*sync=*/true);
    }
    if (!failure.ok()) {
      if (observer_ != nullptr) observer_->OnAborted();
      std::vector<Item*> audit_only;
      for (Item* p : group) {
        if (p->rejected) continue;
        p->result = failure;
        if (p->audit_only) audit_only.push_back(p);
      }
      // On a full disk the changes are refused, but the audited reads grouped with them may still
      // use the reserve: write those alone (the retry has no changes, so it does not recurse).
      if (failure.code() == StatusCode::kResourceExhausted && any_changes && !audit_only.empty()) {
        CommitGroup(audit_only);
      }
      return;
    }
    if (included.empty()) return;
    last_seq_ = seq;
    last_hash_ = std::move(hash);
    last_time_us_ = now;
    size_.store(seq, std::memory_order_release);
    if (observer_ != nullptr) observer_->OnCommitted(seq);
    for (Item* p : included) p->result = p->entry.seq;
    if (head_cache_.size() + heads_in_group_.size() > kMaxCachedHeads) head_cache_.clear();
    for (auto& [key, head] : heads_in_group_) head_cache_[key] = head;
  }

  // Sets `prev` to the newest committed (or earlier in this group) entry of the chain whose head
  // is stored under `head_key`, 0 if there is none yet.
  Status Link(const std::string& head_key, uint64_t& prev) {
    if (auto it = heads_in_group_.find(head_key); it != heads_in_group_.end()) {
      prev = it->second;
      return Status::Ok();
    }
    if (auto it = head_cache_.find(head_key); it != head_cache_.end()) {
      prev = it->second;
      return Status::Ok();
    }
    PV_ASSIGN_OR_RETURN(auto stored, store_.Get(Cf::kIndexes, head_key));
    prev = 0;
    if (stored) {
      PV_ASSIGN_OR_RETURN(prev, DecodeHead(*stored));
    }
    return Status::Ok();
  }

  Store& store_;
  LedgerObserver* const observer_;
  Mutex mu_;
  std::deque<Pending*> queue_ GUARDED_BY(mu_);  // front() is the leader
  uint64_t last_seq_;
  std::string last_hash_;  // raw SHA-256 of the last entry's bytes
  // Chain heads (head key -> seq): of the group being written, and of committed groups. A cache
  // only: the stored head keys are the truth, and the cache forgets everything when full.
  static constexpr size_t kMaxCachedHeads = 1 << 16;
  std::unordered_map<std::string, uint64_t> heads_in_group_;
  std::unordered_map<std::string, uint64_t> head_cache_;
  int64_t last_time_us_;
  std::atomic<uint64_t> size_;
};

Status DecodeAt(uint64_t seq, std::string_view bytes, AuditEntry& out) {
  auto e = DecodeAuditEntry(bytes);
  if (!e.ok()) return DataLoss("audit entry " + std::to_string(seq) + ": " + e.status().message());
  if (e->seq != seq) {
    return DataLoss("audit entry " + std::to_string(seq) + " carries another sequence number");
  }
  out = std::move(*e);
  return Status::Ok();
}

}  // namespace

namespace {

// Walks the entries of one chain (a patient's or a user's), oldest first, checking each against
// the index: the index's seqs up to the head must be exactly the chain's links. `who` names the
// chain in messages ("this patient"); `belongs` says whether an entry is on it; `link` is its
// pointer to the previous entry of the chain.
Status ScanChain(Store& store, const std::string& index_prefix, const std::string& head_key,
                 std::string_view who, const std::function<bool(const AuditEntry&)>& belongs,
                 uint64_t AuditEntry::*link, const AuditEntryFn& fn, uint64_t up_to_seq) {
  // The head first: entries committed after it are left out, and every index key up to it was
  // written in the same batch as the head that covers it.
  PV_ASSIGN_OR_RETURN(auto head_value, store.Get(Cf::kIndexes, head_key));
  uint64_t head = 0;
  if (head_value) {
    PV_ASSIGN_OR_RETURN(head, DecodeHead(*head_value));
  }
  // Collected first: the scan must not hold an iterator open while entries are read.
  std::vector<uint64_t> seqs;
  PV_RETURN_IF_ERROR(store.Scan(Cf::kIndexes, index_prefix, PrefixEnd(index_prefix),
                                [&](std::string_view key, std::string_view) {
                                  if (key.size() == index_prefix.size() + 8) {
                                    const uint64_t seq =
                                        ReadBigEndian64(key.substr(index_prefix.size()));
                                    if (seq <= head || head == 0) seqs.push_back(seq);
                                  }
                                  return true;
                                }));
  const std::string prefix = "the audit index of " + std::string(who);
  if (head == 0) {
    if (seqs.empty()) return Status::Ok();
    return DataLoss(prefix + " names entry " + std::to_string(seqs.front()) +
                    " but its chain has no head");
  }
  if (seqs.empty() || seqs.back() != head) {
    return DataLoss(prefix + " is missing entry " + std::to_string(head));
  }
  uint64_t previous = 0;  // the chain link the next entry must carry
  for (uint64_t seq : seqs) {
    auto bytes = ReadAuditEntryBytes(store, seq);
    if (!bytes.ok()) {
      if (bytes.status().code() != StatusCode::kNotFound) return bytes.status();
      return DataLoss("audit entry " + std::to_string(seq) + " is missing");
    }
    AuditEntry e;
    PV_RETURN_IF_ERROR(DecodeAt(seq, *bytes, e));
    if (!belongs(e)) {
      return DataLoss(prefix + " names entry " + std::to_string(seq) + ", which is not theirs");
    }
    if (e.*link != previous) {
      // The entry points further back than the index's previous key: the index lost what is
      // between (the entry it points to). A link to a later seq cannot be genuine either.
      if (e.*link > previous && e.*link < seq) {
        return DataLoss(prefix + " is missing entry " + std::to_string(e.*link));
      }
      return DataLoss(prefix + " names entry " + std::to_string(previous) +
                      ", which its chain does not reach");
    }
    previous = seq;
    if (seq <= up_to_seq) PV_RETURN_IF_ERROR(fn(e, *bytes));
  }
  return Status::Ok();
}

}  // namespace

Status ScanPatientAuditEntries(Store& store, std::string_view patient_blind_id,
                               const AuditEntryFn& fn, uint64_t up_to_seq) {
  const std::string bid(patient_blind_id);
  const std::string bid_hex = crypto::HexEncode(bid);
  return ScanChain(
      store, "ap" + bid, "hp" + bid, "this patient",
      [&](const AuditEntry& e) { return e.patient_bid == bid_hex; }, &AuditEntry::patient_prev, fn,
      up_to_seq);
}

Status ScanUserAuditEntries(Store& store, std::string_view user, const AuditEntryFn& fn,
                            uint64_t up_to_seq) {
  if (user.find('\0') != std::string_view::npos) return Status::Ok();  // never indexed
  const std::string name(user);
  return ScanChain(
      store, "au" + name + std::string(1, '\0'), "hu" + name, "this user",
      [&](const AuditEntry& e) { return e.user == name; }, &AuditEntry::user_prev, fn, up_to_seq);
}

std::string AuditKey(uint64_t seq) { return BigEndian64(seq); }

StatusOr<std::unique_ptr<Ledger>> Ledger::Open(Store& store, LedgerObserver* observer) {
  PV_ASSIGN_OR_RETURN(auto head, store.Get(Cf::kState, kLedgerHeadKey));
  if (!head) {
    bool any = false;
    PV_RETURN_IF_ERROR(store.Scan(Cf::kAudit, "", "", [&](std::string_view, std::string_view) {
      any = true;
      return false;
    }));
    if (any) return DataLoss("audit entries exist but the ledger head is missing");
    return std::unique_ptr<Ledger>(new LedgerImpl(store, observer, 0, "", 0));
  }
  if (head->size() != kHeadBytes) return DataLoss("ledger head is malformed");
  const uint64_t seq = ReadBigEndian64(*head);
  const std::string hash = head->substr(8);
  if (seq == 0) return DataLoss("ledger head is malformed");

  PV_ASSIGN_OR_RETURN(auto tail, store.Get(Cf::kAudit, AuditKey(seq)));
  if (!tail) return DataLoss("audit log tail entry is missing");
  if (!crypto::ConstantTimeEquals(crypto::AsView(crypto::Sha256(*tail)), hash)) {
    return DataLoss("audit log tail does not match the ledger head");
  }
  AuditEntry e;
  PV_RETURN_IF_ERROR(DecodeAt(seq, *tail, e));
  PV_ASSIGN_OR_RETURN(auto beyond, store.Get(Cf::kAudit, AuditKey(seq + 1)));
  if (beyond) return DataLoss("audit log has entries beyond the ledger head");
  return std::unique_ptr<Ledger>(new LedgerImpl(store, observer, seq, hash, e.time_unix_us));
}

StatusOr<std::string> ReadAuditEntryBytes(Store& store, uint64_t seq) {
  if (seq == 0) return NotFound("no such audit entry");
  PV_ASSIGN_OR_RETURN(auto bytes, store.Get(Cf::kAudit, AuditKey(seq)));
  if (!bytes) return NotFound("no such audit entry");
  return std::move(*bytes);
}

StatusOr<AuditEntry> ReadAuditEntry(Store& store, uint64_t seq) {
  PV_ASSIGN_OR_RETURN(std::string bytes, ReadAuditEntryBytes(store, seq));
  AuditEntry e;
  PV_RETURN_IF_ERROR(DecodeAt(seq, bytes, e));
  return e;
}

Status ScanAuditEntries(Store& store, uint64_t from_seq, uint64_t to_seq, const AuditScanFn& fn) {
  uint64_t expected = std::max<uint64_t>(from_seq, 1);
  if (to_seq < expected) return Status::Ok();
  const std::string end = to_seq == UINT64_MAX ? "" : AuditKey(to_seq + 1);
  Status status;
  PV_RETURN_IF_ERROR(store.Scan(
      Cf::kAudit, AuditKey(expected), end, [&](std::string_view key, std::string_view value) {
        if (key != AuditKey(expected)) {
          status = DataLoss("audit log is missing entry " + std::to_string(expected));
          return false;
        }
        AuditEntry e;
        status = DecodeAt(expected, value, e);
        if (!status.ok()) return false;
        ++expected;
        return fn(e, value);
      }));
  return status;
}

}  // namespace phivault::storage
