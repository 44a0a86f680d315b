// The patient-rights commands (restrictions, the right-of-access export, confidential contact,
// patient requests and their deadlines, the facts retention rules read) and the break-glass
// review.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

// "-" for a value that is absent, null or empty.
std::string OrDash(const std::optional<std::string>& v) {
  return v && !v->empty() ? Printable(*v) : "-";
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + Printable(item);
  return out;
}

int RunReview(client::Client& c, const client::Actor& actor, const Globals& g, bool all) {
  auto events = c.ListBreakGlassEvents(actor, all);
  if (!events.ok()) return Fail(events.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : *events) list.push_back(client::ToJson(e));
    PrintJson({{"events", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "STATUS", "USER", "ROLE", "APPLICATION",
                                                 "PATIENT", "OPENED", "EXPIRES", "CLOSED",
                                                 "ACCESSES", "SIGNED OFF BY", "REASON"}};
  for (const auto& e : *events) {
    rows.push_back({Printable(e.id), Printable(e.status), Printable(e.user), Printable(e.role),
                    Printable(e.application), Printable(e.patient_id), Printable(e.opened),
                    Printable(e.expires), OrDash(e.closed), std::to_string(e.accesses),
                    OrDash(e.signed_off_by), Printable(e.reason)});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunSignOff(client::Client& c, const client::Actor& actor, const Globals& g,
               const std::string& id, const std::string& note) {
  auto r = c.SignOffBreakGlass(actor, id, note);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"id", r->id},
               {"signed_off_by", r->signed_off_by},
               {"signed_off_at", r->signed_off_at},
               {"audit_seq", r->audit_seq}});
  } else {
    std::cout << "signed off " << Printable(r->id) << " by " << Printable(r->signed_off_by)
              << " at " << Printable(r->signed_off_at) << ", audit seq " << r->audit_seq << "\n";
  }
  return kExitOk;
}

int PrintCreated(const client::Result<client::Created>& r, const Globals& g) {
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"id", r->id}, {"audit_seq", r->audit_seq}});
  } else {
    std::cout << Printable(r->id) << "\n";
  }
  return kExitOk;
}

// What a restriction covers, in a few words.
std::string Scope(const client::Restriction& r) {
  if (r.record_ids.empty() && r.categories.empty()) return "all records";
  std::string out;
  if (!r.record_ids.empty()) out = "records " + Join(r.record_ids);
  if (!r.categories.empty())
    out += (out.empty() ? "" : "; ") + ("categories " + Join(r.categories));
  return out;
}

int RunRestrictionList(client::Client& c, const client::Actor& actor, const Globals& g,
                       const std::string& patient, bool all) {
  auto list = c.ListRestrictions(actor, patient, all);
  if (!list.ok()) return Fail(list.error());
  if (g.json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& r : *list) items.push_back(client::ToJson(r));
    PrintJson({{"restrictions", items}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "PURPOSES", "SCOPE", "RECIPIENT", "CREATED", "CREATED BY", "ENDED", "NOTE"}};
  for (const auto& r : *list) {
    rows.push_back({Printable(r.id), Join(r.purposes), Scope(r), Printable(r.recipient),
                    Printable(r.created), Printable(r.created_by), OrDash(r.ended),
                    OrDash(r.note)});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunRestrictionEnd(client::Client& c, const client::Actor& actor, const Globals& g,
                      const std::string& patient, const std::string& id,
                      const std::string& reason) {
  auto r = c.EndRestriction(actor, patient, id, reason);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"id", r->id}, {"ended", r->ended}, {"audit_seq", r->audit_seq}});
  } else {
    std::cout << "ended " << Printable(r->id) << " at " << Printable(r->ended) << ", audit seq "
              << r->audit_seq << "\n";
  }
  return kExitOk;
}

int RunPatientExport(client::Client& c, const client::Actor& actor, const std::string& patient,
                     const std::string& request, const std::string& output) {
  if (output.empty()) {
    if (::isatty(STDOUT_FILENO) == 1) {
      return UsageError(
          "patient export writes a tar archive: give -o FILE or redirect standard output");
    }
    auto r = c.ExportPatient(actor, patient, Opt(request), std::cout);
    return r.ok() ? kExitOk : Fail(r.error());
  }
  std::string error;
  auto file = OutputFile::Create(output, &error);
  if (!file) {
    PrintError("cannot write the export", error);
    return kExitError;
  }
  auto r = c.ExportPatient(actor, patient, Opt(request),
                           [&file](std::string_view chunk) { return file->Write(chunk); });
  if (!r.ok()) {
    if (!file->error().empty()) {
      PrintError("cannot write the export", file->error());
      return kExitError;
    }
    return Fail(r.error());  // the file is removed: no partial copy of the records is left
  }
  if (!file->Commit(&error)) {
    PrintError("cannot write the export", error);
    return kExitError;
  }
  return kExitOk;
}

int RunContactShow(client::Client& c, const client::Actor& actor, const Globals& g,
                   const std::string& patient) {
  auto r = c.GetContact(actor, patient);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson(client::ToJson(*r));
    return kExitOk;
  }
  std::cout << "patient:  " << Printable(r->patient_id) << "\n"
            << "channel:  " << Printable(r->channel) << "\n"
            << "address:  " << Printable(r->address) << "\n"
            << "note:     " << OrDash(r->note) << "\n"
            << "updated:  " << Printable(r->updated) << "\n";
  return kExitOk;
}

int PrintFacts(const client::PatientFacts& f, const Globals& g, std::optional<uint64_t> audit_seq) {
  if (g.json) {
    nlohmann::json j = {{"facts", client::ToJson(f)}};
    if (audit_seq) j["audit_seq"] = *audit_seq;
    PrintJson(j);
    return kExitOk;
  }
  std::cout << "patient:         " << Printable(f.patient_id) << "\n"
            << "date of birth:   " << OrDash(f.date_of_birth) << "\n"
            << "date of death:   " << OrDash(f.date_of_death) << "\n"
            << "last encounter:  " << OrDash(f.last_encounter) << "\n"
            << "updated:         " << Printable(f.updated_at) << " by " << Printable(f.updated_by)
            << "\n";
  if (audit_seq) std::cout << "audit seq:       " << *audit_seq << "\n";
  return kExitOk;
}

int RunRequestList(client::Client& c, const client::Actor& actor, const Globals& g,
                   const client::PatientRequestQuery& query) {
  auto list = c.ListPatientRequests(actor, query);
  if (!list.ok()) return Fail(list.error());
  if (g.json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& r : *list) items.push_back(client::ToJson(r));
    PrintJson({{"requests", items}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "PATIENT", "KIND", "RECEIVED", "DUE", "STATUS", "OUTCOME", "CLOSED", "DELIVERED"}};
  for (const auto& r : *list) {
    std::string due = Printable(r.due);
    if (r.extended) due += " (extended)";
    if (r.overdue) due += " OVERDUE";
    rows.push_back({Printable(r.id), Printable(r.patient_id), Printable(r.kind),
                    Printable(r.received), due, Printable(r.status), OrDash(r.outcome),
                    OrDash(r.closed), OrDash(r.delivered)});
  }
  PrintTable(rows);
  return kExitOk;
}

}  // namespace

PatientCommands::PatientCommands(CLI::App& app, CLI::App& audit) {
  review_ = audit.add_subcommand(
      "review", "break-glass windows awaiting review (ended, not signed off); --all: every one");
  review_->add_flag("--all", a_.all, "include open and signed-off windows");
  review_->fallthrough();
  sign_off_ = review_->add_subcommand("sign-off", "sign off a reviewed break-glass window");
  sign_off_->add_option("id", a_.id, "the window's id (from `audit review`)")->required();
  sign_off_->add_option("--note", a_.note, "what the review found")->required();

  CLI::App* restrictions =
      app.add_subcommand("restrictions", "restrictions the practice agreed to (45 CFR 164.522(a))");
  restrictions->require_subcommand(1);
  restrictions->fallthrough();
  restrict_add_ = restrictions->add_subcommand("add", "add a restriction; prints its id");
  restrict_add_->add_option("--patient", a_.patient, "patient identifier")->required();
  restrict_add_
      ->add_option("--purpose", a_.purposes,
                   "PurposeOfUse code a restricted use is for, e.g. HPAYMT HOPERAT (repeatable)")
      ->required();
  restrict_add_->add_option("--record", a_.records,
                            "a record restricted (repeatable; default: all the patient's)");
  restrict_add_->add_option("--category", a_.categories, "a category restricted (repeatable)");
  restrict_add_->add_option("--recipient", a_.recipient, "to whom the restriction applies")
      ->required();
  restrict_add_->add_option("--note", a_.note, "note, e.g. where the request is filed");
  restrict_ls_ = restrictions->add_subcommand("ls", "list a patient's restrictions in force");
  restrict_ls_->add_option("--patient", a_.patient, "patient identifier")->required();
  restrict_ls_->add_flag("--all", a_.all, "include ended restrictions");
  restrict_end_ = restrictions->add_subcommand("end", "end a restriction");
  restrict_end_->add_option("--patient", a_.patient, "patient identifier")->required();
  restrict_end_->add_option("--id", a_.id, "the restriction's id")->required();
  restrict_end_->add_option("--reason", a_.reason, "why it ends")->required();

  CLI::App* patient = app.add_subcommand("patient", "a patient's rights");
  patient->require_subcommand(1);
  patient->fallthrough();
  export_ = patient->add_subcommand(
      "export",
      "the patient's designated record set as a tar (45 CFR 164.524); purpose PATRQT unless "
      "--purpose is given");
  export_->add_option("--patient", a_.patient, "patient identifier")->required();
  export_->add_option("-o,--output", a_.output, "write the tar to FILE (created 0600)");
  export_->add_option("--request", a_.request, "the patient request it fulfils");
  CLI::App* contact =
      patient->add_subcommand("contact", "confidential communications (45 CFR 164.522(b))");
  contact->require_subcommand(1);
  contact->fallthrough();
  contact_set_ = contact->add_subcommand("set", "set where the patient is to be contacted");
  contact_set_->add_option("--patient", a_.patient, "patient identifier")->required();
  contact_set_->add_option("--address", a_.address, "the address, number or portal account")
      ->required();
  contact_set_->add_option("--channel", a_.channel, "mail, email, phone or portal")
      ->required()
      ->check(CLI::IsMember({"mail", "email", "phone", "portal"}));
  contact_set_->add_option("--note", a_.note, "note, e.g. \"no voicemail\"");
  contact_show_ = contact->add_subcommand("show", "show where the patient is to be contacted");
  contact_show_->add_option("--patient", a_.patient, "patient identifier")->required();

  facts_set_ = patient->add_subcommand(
      "set",
      "set the facts retention is computed from (date of birth, death, last encounter); each "
      "one left out is kept");
  facts_set_->add_option("--patient", a_.patient, "patient identifier")->required();
  CLI::Option* dob = facts_set_->add_option("--dob", a_.dob, "date of birth, YYYY-MM-DD");
  CLI::Option* died = facts_set_->add_option("--died", a_.died, "date of death, YYYY-MM-DD");
  facts_set_->add_option("--last-encounter", a_.last_encounter,
                         "the patient's last encounter, YYYY-MM-DD");
  facts_set_->add_flag("--clear-dob", a_.clear_dob, "forget the date of birth")->excludes(dob);
  facts_set_->add_flag("--clear-died", a_.clear_died, "forget the date of death")->excludes(died);
  facts_show_ = patient->add_subcommand("facts", "show the facts retention is computed from");
  facts_show_->add_option("--patient", a_.patient, "patient identifier")->required();

  CLI::App* requests = app.add_subcommand(
      "requests", "patient requests (access, amendment, accounting) and their deadlines");
  requests->require_subcommand(1);
  requests->fallthrough();
  request_open_ = requests->add_subcommand("open", "open a request; prints its id and due date");
  request_open_->add_option("--patient", a_.patient, "patient identifier")->required();
  request_open_
      ->add_option("--kind", a_.kind,
                   "access (due in 30 days), amendment or accounting "
                   "(60 days)")
      ->required()
      ->check(CLI::IsMember({"access", "amendment", "accounting"}));
  request_open_->add_option("--received", a_.received, "YYYY-MM-DD (default: today)");
  request_open_->add_option("--note", a_.note, "note");
  request_extend_ = requests->add_subcommand("extend", "extend a request by 30 days (once)");
  request_extend_->add_option("id", a_.id, "request id")->required();
  request_extend_->add_option("--reason", a_.reason, "the reason given to the patient")->required();
  request_close_ = requests->add_subcommand("close", "close a request");
  request_close_->add_option("id", a_.id, "request id")->required();
  request_close_->add_option("--outcome", a_.outcome, "fulfilled or denied")
      ->required()
      ->check(CLI::IsMember({"fulfilled", "denied"}));
  request_close_
      ->add_option("--delivered", a_.delivered,
                   "what was delivered: an export's sha256, a report's audit seq, an "
                   "amendment's record@version")
      ->required();
  request_close_->add_option("--note", a_.note, "note");
  request_ls_ = requests->add_subcommand("ls", "list open requests");
  request_ls_->add_option("--patient", a_.patient, "only this patient's");
  request_ls_->add_flag("--overdue", a_.overdue, "only requests past their due date");
  request_ls_->add_flag("--all", a_.all, "include closed requests");
}

std::optional<int> PatientCommands::Run(client::Client& c, const client::Actor& actor,
                                        const Globals& g) const {
  if (sign_off_->parsed()) return RunSignOff(c, actor, g, a_.id, a_.note);
  if (review_->parsed()) return RunReview(c, actor, g, a_.all);
  if (restrict_add_->parsed()) {
    for (const std::string& p : a_.purposes) {
      if (!IsPurposeOfUseCode(p)) {
        return UsageError("restrictions add --purpose " + Printable(p) +
                          " is not an HL7 PurposeOfUse code; the usual ones are " +
                          PurposeOfUseCodeList());
      }
    }
    return PrintCreated(c.AddRestriction(actor, {.patient_id = a_.patient,
                                                 .purposes = a_.purposes,
                                                 .record_ids = a_.records,
                                                 .categories = a_.categories,
                                                 .recipient = a_.recipient,
                                                 .note = Opt(a_.note)}),
                        g);
  }
  if (restrict_ls_->parsed()) return RunRestrictionList(c, actor, g, a_.patient, a_.all);
  if (restrict_end_->parsed()) {
    return RunRestrictionEnd(c, actor, g, a_.patient, a_.id, a_.reason);
  }
  if (export_->parsed()) {
    client::Actor requester = actor;
    if (!g.purpose_given) requester.purpose = "PATRQT";
    return RunPatientExport(c, requester, a_.patient, a_.request, a_.output);
  }
  if (contact_set_->parsed()) {
    return PrintAuditSeq(c.SetContact(actor, {.patient_id = a_.patient,
                                              .address = a_.address,
                                              .channel = a_.channel,
                                              .note = Opt(a_.note)}),
                         g);
  }
  if (contact_show_->parsed()) return RunContactShow(c, actor, g, a_.patient);
  if (facts_set_->parsed()) {
    for (const auto& [name, date] : {std::pair<const char*, const std::string*>{"--dob", &a_.dob},
                                     {"--died", &a_.died},
                                     {"--last-encounter", &a_.last_encounter}}) {
      if (!date->empty() && !IsCalendarDate(*date)) {
        return UsageError(std::string(name) + " must be a calendar date written YYYY-MM-DD");
      }
    }
    client::PatientFactsChange change{.patient_id = a_.patient,
                                      .date_of_birth = Opt(a_.dob),
                                      .date_of_death = Opt(a_.died),
                                      .last_encounter = Opt(a_.last_encounter)};
    if (a_.clear_dob) change.date_of_birth = "";
    if (a_.clear_died) change.date_of_death = "";
    if (!change.date_of_birth && !change.date_of_death && !change.last_encounter) {
      return UsageError(
          "patient set needs at least one of --dob, --died, --last-encounter, --clear-dob, "
          "--clear-died");
    }
    auto r = c.SetPatientFacts(actor, change);
    if (!r.ok()) return Fail(r.error());
    return PrintFacts(r->facts, g, r->audit_seq);
  }
  if (facts_show_->parsed()) {
    auto r = c.GetPatientFacts(actor, a_.patient);
    if (!r.ok()) return Fail(r.error());
    return PrintFacts(*r, g, std::nullopt);
  }
  if (request_open_->parsed()) {
    if (!a_.received.empty() && !IsCalendarDate(a_.received)) {
      return UsageError("--received must be a calendar date written YYYY-MM-DD");
    }
    auto r = c.OpenPatientRequest(actor, {.patient_id = a_.patient,
                                          .kind = a_.kind,
                                          .received = Opt(a_.received),
                                          .note = Opt(a_.note)});
    if (!r.ok()) return Fail(r.error());
    if (g.json) {
      PrintJson({{"id", r->id}, {"due", r->due}, {"audit_seq", r->audit_seq}});
    } else {
      std::cout << Printable(r->id) << " due " << Printable(r->due) << "\n";
    }
    return kExitOk;
  }
  if (request_extend_->parsed()) {
    auto r = c.ExtendPatientRequest(actor, a_.id, a_.reason);
    if (!r.ok()) return Fail(r.error());
    if (g.json) {
      PrintJson({{"id", r->id}, {"due", r->due}});
    } else {
      std::cout << Printable(r->id) << " due " << Printable(r->due) << "\n";
    }
    return kExitOk;
  }
  if (request_close_->parsed()) {
    auto r = c.ClosePatientRequest(
        actor, a_.id, {.outcome = a_.outcome, .delivered = a_.delivered, .note = Opt(a_.note)});
    if (!r.ok()) return Fail(r.error());
    if (g.json) {
      PrintJson({{"id", r->id}, {"closed", r->closed}, {"audit_seq", r->audit_seq}});
    } else {
      std::cout << Printable(r->id) << " closed " << Printable(r->closed) << ", audit seq "
                << r->audit_seq << "\n";
    }
    return kExitOk;
  }
  if (request_ls_->parsed()) {
    return RunRequestList(
        c, actor, g,
        {.patient_id = Opt(a_.patient), .overdue = a_.overdue, .include_closed = a_.all});
  }
  return std::nullopt;
}

}  // namespace phivault::tools
