// The output of a run, from the rows the scenarios produced: the table for people (each library
// figure, its floor, their ratio and the target), the list of what each floor is, the comparison
// with the reference figures of the Go original, and last the one line of JSON for machines. It
// also owns the targets' wording and verdicts (`Row::target_text`, `Row::met`, `Row::versus_go`),
// so that the table and the JSON cannot disagree. It measures nothing.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        return line.substr(line.find_first_not_of(' ', colon + 1));
      }
    }
  }
  return "unknown CPU";
}

std::string number(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  std::snprintf(buf, sizeof buf,
                a >= 1000  ? "%.0f"
                : a >= 100 ? "%.1f"
                : a >= 10  ? "%.2f"
                           : "%.3f",
                v);
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
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
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) {
    return "null";  // JSON has no NaN or infinity
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// The width of the label column: the longest label, at least 31.
int label_width(const std::vector<Row>& rows) {
  std::size_t width = 31;
  for (const auto& row : rows) {
    width = std::max(width, row.label.size());
  }
  return static_cast<int>(width);
}

}  // namespace

std::string Row::target_text() const {
  const char* bound = "";
  switch (target.kind) {
    case TargetKind::none:
      return "";
    case TargetKind::ratio_at_most:
      bound = "ratio <= ";
      break;
    case TargetKind::median_at_most:
      bound = "<= ";
      break;
    case TargetKind::median_at_least:
      bound = ">= ";
      break;
    case TargetKind::max_at_most:
      bound = "max <= ";
      break;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%g", bound, target.value);
  return buf;
}

std::optional<bool> Row::met() const {
  switch (target.kind) {
    case TargetKind::none:
      return std::nullopt;
    case TargetKind::ratio_at_most:
      return ratio && ratio->median <= target.value;
    case TargetKind::median_at_most:
      return lib.median <= target.value;
    case TargetKind::median_at_least:
      return lib.median >= target.value;
    case TargetKind::max_at_most:
      return lib.max <= target.value;
  }
  return std::nullopt;
}

std::optional<int> Row::versus_go() const {
  if (!go) {
    return std::nullopt;
  }
  if (lib.median < go->low) {
    return -1;
  }
  return lib.median <= go->high ? 0 : 1;
}

std::string machine_description() {
  std::string host = read_first_line("/proc/sys/kernel/hostname");
  if (host.empty()) {
    host = "unknown host";
  }
  return host + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores, " +
         cpu_model();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  char buf[32] = "unknown";
  if (const std::tm* t = std::gmtime(&now); t != nullptr) {
    utc = *t;
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  }
  return buf;
}

void print_table(const std::vector<Row>& rows) {
  const int w = label_width(rows);
  std::printf("\n%-*s %-12s %9s %9s %9s | %9s  %-6s %-13s | %-13s %s\n", w, "scenario", "unit",
              "median", "min", "max", "floor", "ratio", "(min-max)", "target", "met");
  std::printf("%s\n", std::string(static_cast<std::size_t>(w) + 95, '-').c_str());
  for (const auto& row : rows) {
    std::string ratio;
    std::string ratio_range;
    if (row.ratio) {
      ratio = number(row.ratio->median);
      ratio_range = "(" + number(row.ratio->min) + "-" + number(row.ratio->max) + ")";
    }
    const auto met = row.met();
    std::printf("%-*s %-12s %9s %9s %9s | %9s  %-6s %-13s | %-13s %s\n", w, row.label.c_str(),
                row.unit.c_str(), number(row.lib.median).c_str(), number(row.lib.min).c_str(),
                number(row.lib.max).c_str(), row.floor ? number(row.floor->median).c_str() : "",
                ratio.c_str(), ratio_range.c_str(), row.target_text().c_str(),
                met ? (*met ? "yes" : "NO") : "");
  }
  std::printf("\nFloors:\n");
  for (const auto& row : rows) {
    if (!row.floor_note.empty()) {
      std::printf("  %-*s %s\n", w, row.label.c_str(), row.floor_note.c_str());
    }
  }
}

void print_go(const std::vector<Row>& rows) {
  std::printf("\nThe Go original on this machine (reference figures from the issue):\n");
  const int w = label_width(rows);
  std::printf("%-*s %-12s %11s %11s   %s\n", w, "scenario", "unit", "Go", "ours", "beat Go?");
  std::printf("%s\n", std::string(static_cast<std::size_t>(w) + 70, '-').c_str());
  for (const auto& row : rows) {
    const auto verdict = row.versus_go();
    if (!verdict) {
      continue;
    }
    char go[32];
    if (row.go->low == row.go->high) {
      std::snprintf(go, sizeof go, "~%g", row.go->low);
    } else {
      std::snprintf(go, sizeof go, "%g-%g", row.go->low, row.go->high);
    }
    std::string text;
    if (*verdict < 0) {
      text = "yes, " + number(row.go->low / row.lib.median) + "x faster than Go's best";
    } else if (*verdict == 0) {
      text = "tie: within Go's range";
    } else {
      text = "no, " + number(row.lib.median / row.go->high) + "x slower than Go's worst";
    }
    std::printf("%-*s %-12s %11s %11s   %s\n", w, row.label.c_str(), row.unit.c_str(), go,
                number(row.lib.median).c_str(), text.c_str());
  }
}

void print_json(const std::vector<Row>& rows, const std::vector<std::string>& errors,
                const Config& config, const MachineProbes (&probes)[2]) {
  std::string out = "{\"machine\":" + json_string(machine_description()) +
                    ",\"line_round_trip_ns\":[" + json_number(probes[0].line_round_trip_ns) + "," +
                    json_number(probes[1].line_round_trip_ns) + "],\"first_touch_ns\":[" +
                    json_number(probes[0].first_touch_ns) + "," +
                    json_number(probes[1].first_touch_ns) +
                    "],\"huge_pages\":" + json_string(probes[0].huge_pages) +
                    ",\"glibc_tunables\":" + json_string(probes[0].glibc_tunables) +
                    ",\"date\":" + json_string(utc_now()) +
                    ",\"mode\":" + json_string(config.quick ? "quick" : "full") +
                    ",\"repetitions\":" + std::to_string(config.reps) + ",\"results\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const auto met = row.met();
    const auto verdict = row.versus_go();
    const std::string target = row.target_text();
    out += std::string(i == 0 ? "" : ",") + "{\"name\":" + json_string(row.name) +
           ",\"median\":" + json_number(row.lib.median) + ",\"min\":" + json_number(row.lib.min) +
           ",\"max\":" + json_number(row.lib.max) + ",\"unit\":" + json_string(row.unit) +
           ",\"floor_median\":" + (row.floor ? json_number(row.floor->median) : "null") +
           ",\"ratio\":" + (row.ratio ? json_number(row.ratio->median) : "null") +
           ",\"target\":" + (target.empty() ? "null" : json_string(target)) +
           ",\"met\":" + (met ? (*met ? "true" : "false") : "null") +
           ",\"go_low\":" + (row.go ? json_number(row.go->low) : "null") +
           ",\"go_high\":" + (row.go ? json_number(row.go->high) : "null") +
           ",\"beats_go\":" + (verdict ? (*verdict < 0 ? "true" : "false") : "null") + "}";
  }
  out += "],\"errors\":[";
  for (std::size_t i = 0; i < errors.size(); ++i) {
    out += (i == 0 ? "" : ",") + json_string(errors[i]);
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
}

}  // namespace bench
