#include "daemon/encounter_cache.h"

#include <utility>

namespace phivault::daemon {
namespace {

bool Later(std::optional<EncounterCache::Day> day, std::optional<EncounterCache::Day> than) {
  return day && (!than || std::chrono::sys_days(*day) > std::chrono::sys_days(*than));
}

}  // namespace

EncounterCache::EncounterCache(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

std::optional<std::optional<EncounterCache::Day>> EncounterCache::Lookup(
    const std::string& patient_id) {
  MutexLock lock(mu_);
  auto it = index_.find(patient_id);
  if (it == index_.end() || !it->second->complete) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->last;
}

EncounterCache::Fill EncounterCache::Begin(const std::string& patient_id) {
  MutexLock lock(mu_);
  Fill fill;
  fill.patient_id = patient_id;
  fill.generation = TouchLocked(patient_id).generation;
  return fill;
}

std::optional<EncounterCache::Day> EncounterCache::Finish(const Fill& fill,
                                                          std::optional<Day> read) {
  MutexLock lock(mu_);
  auto it = index_.find(fill.patient_id);
  if (it == index_.end()) return read;
  Entry& e = *it->second;
  std::optional<Day> merged = e.last;
  if (Later(read, merged)) merged = read;
  if (e.generation == fill.generation &&
      (fill.window == 0 || !ForgottenSinceLocked(fill.patient_id, fill.window))) {
    e.last = merged;
    e.complete = true;
  }
  return merged;
}

bool EncounterCache::Note(const std::string& patient_id, std::optional<Day> date) {
  MutexLock lock(mu_);
  Entry& e = TouchLocked(patient_id);
  const bool later = Later(date, e.last);
  if (later) e.last = date;
  return later;
}

void EncounterCache::Forget(const std::string& patient_id) {
  MutexLock lock(mu_);
  if (auto it = index_.find(patient_id); it != index_.end()) {
    auto entry = it->second;
    index_.erase(it);
    lru_.erase(entry);
  }
  if (!windows_.empty()) forgotten_[patient_id] = ++sequence_;
}

EncounterCache::Window EncounterCache::OpenWindow() {
  MutexLock lock(mu_);
  const uint64_t opened = ++sequence_;
  windows_.insert(opened);
  return Window(this, opened);
}

size_t EncounterCache::size() const {
  MutexLock lock(mu_);
  return index_.size();
}

EncounterCache::Entry& EncounterCache::TouchLocked(const std::string& patient_id) {
  if (auto it = index_.find(patient_id); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return *it->second;
  }
  lru_.push_front(Entry{patient_id, std::nullopt, false, next_generation_++});
  index_.emplace(lru_.front().patient_id, lru_.begin());
  EvictLocked();
  return lru_.front();
}

void EncounterCache::EvictLocked() {
  while (index_.size() > capacity_ + room_) {
    index_.erase(lru_.back().patient_id);
    lru_.pop_back();
  }
}

bool EncounterCache::ForgottenSinceLocked(const std::string& patient_id, uint64_t since) const {
  auto it = forgotten_.find(patient_id);
  return it != forgotten_.end() && it->second > since;
}

void EncounterCache::AddRoom(size_t more) {
  MutexLock lock(mu_);
  room_ += more;
}

void EncounterCache::CloseWindow(uint64_t opened, size_t room) {
  MutexLock lock(mu_);
  windows_.erase(windows_.find(opened));
  room_ -= room;
  if (windows_.empty()) {
    forgotten_.clear();
  } else {
    const uint64_t oldest = *windows_.begin();
    std::erase_if(forgotten_, [&](const auto& f) { return f.second <= oldest; });
  }
  EvictLocked();
}

EncounterCache::Window::Window(Window&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)), opened_(other.opened_), room_(other.room_) {}

EncounterCache::Window::~Window() {
  if (cache_ != nullptr) cache_->CloseWindow(opened_, room_);
}

void EncounterCache::Window::Reserve(size_t room) {
  if (room <= room_) return;
  cache_->AddRoom(room - room_);
  room_ = room;
}

EncounterCache::Fill EncounterCache::Window::Begin(const std::string& patient_id) {
  Fill fill = cache_->Begin(patient_id);
  fill.window = opened_;
  return fill;
}

}  // namespace phivault::daemon
