// `phivault archive run [--dry-run]` (docs/archive.md): the daemon moves the records nobody has
// touched for [archive] after_days to its archive tier; a dry run counts them.
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>

#include "tools/cli_internal.h"

namespace phivault::tools {

ArchiveCommands::ArchiveCommands(CLI::App& app) {
  CLI::App* archive = app.add_subcommand(
      "archive", "the archive tier: records long untouched, kept with heavier compression");
  archive->require_subcommand(1);
  archive->fallthrough();
  run_ = archive->add_subcommand(
      "run",
      "move the records whose last access and whose patient's last encounter are older than "
      "[archive] after_days to the archive tier (they stay readable); --dry-run counts them");
  run_->add_flag("--dry-run", dry_run_, "count what is due; move nothing");
}

bool ArchiveCommands::LongRunning() const { return run_->parsed(); }

std::optional<int> ArchiveCommands::Run(client::Client& c, const client::Actor& actor,
                                        const Globals& g) const {
  if (!run_->parsed()) return std::nullopt;
  auto run = c.RunArchive(actor, dry_run_);
  if (!run.ok()) return Fail(run.error());
  if (g.json) {
    PrintJson(client::ToJson(*run));
    return kExitOk;
  }
  std::cout << (run->dry_run ? "dry run: " : "") << run->archived_records << " records ("
            << run->archived_versions << " versions) " << (run->dry_run ? "due for" : "moved to")
            << " the archive; last access and last encounter before " << Printable(run->cutoff)
            << "\n"
            << "  " << run->examined_records << " records examined, " << run->already_archived
            << " already archived, " << run->audit_entries_read
            << " audit entries read for recent access\n";
  if (!run->dry_run && run->archived_versions > 0) {
    if (run->compacted) {
      std::cout << "  the store was compacted: the moved content left the live tier's files\n";
    } else {
      std::cout << "  the store was NOT compacted (" << Printable(run->compaction_error)
                << "): the moved content stays in the live tier's files until the next "
                   "compaction\n";
    }
  }
  std::cout << "  audit entry " << run->audit_seq << "\n";
  return kExitOk;
}

}  // namespace phivault::tools
