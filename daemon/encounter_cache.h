// The service's cache of each patient's latest encounter (the latest encounter date among the
// patient's stored records), which retention decisions need for every record they place. Bounded:
// at most `capacity` patients, least recently used first out (docs/configuration.md,
// memory.encounter_cache_patients).
//
// What an entry knows, and why eviction is safe:
// - A *complete* entry covers every stored record of its patient (it was filled from the store,
//   and every encounter noted since was merged in). Only complete entries answer Lookup.
// - A *partial* entry knows only the encounters noted since it was made. Note() says "later"
//   whenever the date is later than what the entry knows, so a partial or missing entry errs
//   towards "later", which makes the caller recompute the patient's other records: never towards
//   "not later", which would leave them under an expiry that is too early.
// - A fill (Begin ... Finish) that raced with an eviction, a Forget, or (for a window) a Forget
//   since the window opened, returns what it read but caches nothing complete.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/mutex.h"

namespace phivault::daemon {

class EncounterCache {
 public:
  using Day = std::chrono::year_month_day;

  // `capacity` >= 1 patients.
  explicit EncounterCache(size_t capacity);
  EncounterCache(const EncounterCache&) = delete;
  EncounterCache& operator=(const EncounterCache&) = delete;

  // The patient's latest encounter if a complete entry holds it (nullopt inside: the patient has
  // no dated encounter); nullopt if the cache does not know it completely (read the store).
  std::optional<std::optional<Day>> Lookup(const std::string& patient_id);

  // A fill: Begin() before reading the patient's records from the store, Finish() with the latest
  // encounter they hold. Finish returns that merged with what was noted meanwhile, and caches it
  // as complete unless the entry was evicted or forgotten in between, or `window` (if given) saw
  // a Forget of this patient since it opened.
  struct Fill {
    std::string patient_id;
    uint64_t generation = 0;
    uint64_t window = 0;  // 0: none
  };
  Fill Begin(const std::string& patient_id);
  std::optional<Day> Finish(const Fill& fill, std::optional<Day> read);

  // Merges an encounter on `date` (nullopt: none) that is now stored. True if it is later than
  // what the cache knew of the patient (always true for a patient it does not know).
  bool Note(const std::string& patient_id, std::optional<Day> date);

  // Drops what is known of the patient (an encounter date changed or disappeared).
  void Forget(const std::string& patient_id);

  // A retention sweep's view: while it lives, Forgets are remembered, so fills begun after the
  // sweep read some of a patient's records (before the window's Begin) still see them; and the
  // cache may hold `room` more entries than its capacity, so the sweep's own entries are not
  // evicted before the sweep reads them back. Trims back to capacity when destroyed.
  class Window {
   public:
    Window(Window&& other) noexcept;
    Window(const Window&) = delete;
    Window& operator=(const Window&) = delete;
    Window& operator=(Window&&) = delete;
    ~Window();
    // Raises the extra room this window holds to `room` entries.
    void Reserve(size_t room);
    // A fill whose completion also requires no Forget of the patient since the window opened.
    Fill Begin(const std::string& patient_id);

   private:
    friend class EncounterCache;
    Window(EncounterCache* cache, uint64_t opened) : cache_(cache), opened_(opened) {}
    EncounterCache* cache_;
    uint64_t opened_;
    size_t room_ = 0;
  };
  Window OpenWindow();

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    std::string patient_id;
    std::optional<Day> last;
    bool complete = false;
    uint64_t generation = 0;  // unique per entry made; a Forget makes a new entry
  };
  using List = std::list<Entry>;

  // Finds the entry, making a partial one if missing, and marks it most recently used.
  Entry& TouchLocked(const std::string& patient_id) REQUIRES(mu_);
  void EvictLocked() REQUIRES(mu_);
  bool ForgottenSinceLocked(const std::string& patient_id, uint64_t since) const REQUIRES(mu_);
  void AddRoom(size_t more);
  void CloseWindow(uint64_t opened, size_t room);

  const size_t capacity_;
  mutable Mutex mu_;
  List lru_ GUARDED_BY(mu_);  // most recently used first
  // Keys view the patient_id of their list entry (list nodes do not move).
  std::unordered_map<std::string_view, List::iterator> index_ GUARDED_BY(mu_);
  uint64_t next_generation_ GUARDED_BY(mu_) = 1;
  size_t room_ GUARDED_BY(mu_) = 0;  // extra entries held by open windows
  // Open windows (by the sequence number they opened at) and, while any is open, the sequence
  // number of each patient's last Forget.
  uint64_t sequence_ GUARDED_BY(mu_) = 1;
  std::multiset<uint64_t> windows_ GUARDED_BY(mu_);
  std::unordered_map<std::string, uint64_t> forgotten_ GUARDED_BY(mu_);
};

}  // namespace phivault::daemon
