#include "daemon/logging.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace phivault::daemon {
namespace {

// sd-daemon(3) priority prefix: journald stores the line at that syslog priority.
class SdPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char p = '6';
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        p = '7';
        break;
      case spdlog::level::info:
        p = '6';
        break;
      case spdlog::level::warn:
        p = '4';
        break;
      case spdlog::level::err:
        p = '3';
        break;
      default:
        p = '2';
        break;
    }
    dest.push_back('<');
    dest.push_back(p);
    dest.push_back('>');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SdPriorityFlag>();
  }
};

constexpr const char* kTimestampedPattern = "%Y-%m-%dT%H:%M:%S.%fZ %l %v";

// True if stderr is the journal stream systemd set up: JOURNAL_STREAM is "<device>:<inode>" of
// that stream (systemd.exec(5)); a child that inherited the variable but not the stream must
// not strip its timestamps.
bool StderrIsJournal() {
  const char* value = std::getenv("JOURNAL_STREAM");
  if (value == nullptr) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(value, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

Status SetupLogging(const std::string& level, const std::string& file) {
  const spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return InvalidArgument("unknown log level");
  }
  try {
    auto stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    if (StderrIsJournal()) {
      auto formatter = std::make_unique<spdlog::pattern_formatter>();
      formatter->add_flag<SdPriorityFlag>('*').set_pattern("%*%v");
      stderr_sink->set_formatter(std::move(formatter));
    } else {
      stderr_sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
          kTimestampedPattern, spdlog::pattern_time_type::utc));
    }
    std::vector<spdlog::sink_ptr> sinks{stderr_sink};
    if (!file.empty()) {
      auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
      file_sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
          kTimestampedPattern, spdlog::pattern_time_type::utc));
      sinks.push_back(std::move(file_sink));
    }
    auto logger = std::make_shared<spdlog::logger>("phivaultd", sinks.begin(), sinks.end());
    logger->set_level(lvl);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
  } catch (const spdlog::spdlog_ex& e) {
    return Unavailable(std::string("cannot set up logging: ") + e.what());
  }
  return Status::Ok();
}

void LogRequest(const RequestLogEntry& e) {
  const auto level = e.status >= 500 ? spdlog::level::warn : spdlog::level::info;
  const double ms = static_cast<double>(e.duration.count()) / 1000.0;
  if (e.problem.empty()) {
    spdlog::log(level, "request id={} method={} route={} status={} duration_ms={:.3f} principal={}",
                e.request_id, e.method, e.route, e.status, ms, e.principal);
  } else {
    spdlog::log(level,
                "request id={} method={} route={} status={} duration_ms={:.3f} principal={} "
                "problem={}",
                e.request_id, e.method, e.route, e.status, ms, e.principal, e.problem);
  }
}

}  // namespace phivault::daemon
