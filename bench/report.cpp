// Turns Google Benchmark JSON into the tables scripts/bench prints: for each
// table the median rate of every competitor per row, over every repetition
// in the files given, and the ratio of each userpipe* competitor to each
// kernel* competitor (the baselines). Counters a benchmark sets (for example
// syscalls_per_MiB, sys_s) follow in a second table, also medians.
//
// Nothing failed may look like a result: a repetition that reported an error
// (SkipWithError) is printed next to its row, and the report exits 1. For
// that it needs every repetition, so it computes the medians itself and
// refuses a file that holds only aggregates (--benchmark_report_aggregates_only
// hides errored repetitions: Google Benchmark leaves them out of the median).
//
// Usage: bench_report [--spread REGEX] [--chart-data DIR] results.json...
//   --spread REGEX    tables whose name matches also show min and max per
//                     cell (default "stability");
//   --chart-data DIR  writes DIR/<table>.tsv per table with a baseline: one
//                     line per row, each competitor's median / the baseline's,
//                     for scripts/bench to draw.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

/// Every repetition of one competitor in one row.
struct cell {
  std::vector<double> rates;  // bytes/s if the benchmark counts bytes, else items/s
  bool bytes = false;
  std::map<std::string, std::vector<double>> counters;  // user counters, per good repetition
  std::vector<std::string> errors;                      // one per failed repetition
  bool aggregate_seen = false;
};

struct table {
  std::vector<std::string> competitors;  // in registration order (random interleaving shuffles the JSON)
  std::vector<std::string> rows;
  std::map<std::string, long> order;  // competitor or row -> the lowest family_index seen
  std::map<std::pair<std::string, std::string>, cell> cells;  // (row, competitor)
};

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  auto const n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string strip_suffixes(std::string name) {
  for (;;) {
    auto slash = name.rfind('/');
    if (slash == std::string::npos) return name;
    std::string last = name.substr(slash + 1);
    if (last == "real_time" || last == "process_time" || last == "manual_time" ||
        last.rfind("min_time:", 0) == 0 || last.rfind("iterations:", 0) == 0 ||
        last.rfind("repeats:", 0) == 0 || last.rfind("threads:", 0) == 0)
      name.resize(slash);
    else
      return name;
  }
}

std::string human(double rate, bool bytes) {
  char buf[64];
  if (std::isnan(rate)) return "";
  if (bytes) {
    if (rate >= 1e9)
      std::snprintf(buf, sizeof buf, "%.2f GB/s", rate / 1e9);
    else
      std::snprintf(buf, sizeof buf, "%.0f MB/s", rate / 1e6);
  } else if (rate >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f M/s", rate / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f k/s", rate / 1e3);
  }
  return buf;
}

std::string number(double v) {
  if (std::isnan(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

/// "65536" -> "64 KiB": row names that are byte counts, for the chart.
std::string pretty_row(std::string const& row) {
  if (row.empty() || row.find_first_not_of("0123456789") != std::string::npos) return row;
  unsigned long long const n = std::stoull(row);
  if (n >= (1ull << 20) && n % (1ull << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + " KiB";
  return row + " B";
}

void add(std::map<std::string, table>& tables, std::vector<std::string>& order, nlohmann::json const& b) {
  bool const aggregate = b.value("run_type", "") == "aggregate";
  std::string name = strip_suffixes(b.value("run_name", b.value("name", "")));
  // A benchmark registered with ->Arg(n) has "/n" appended to the name we
  // gave it; the row is already in the name, so drop that repetition.
  if (auto slash = name.rfind('/'); slash != std::string::npos) {
    auto prev = name.rfind('/', slash - 1);
    if (prev != std::string::npos && name.substr(prev, slash - prev) == name.substr(slash) &&
        std::count(name.begin(), name.end(), '/') >= 3)
      name.resize(slash);
  }
  auto first = name.find('/');
  auto second = first == std::string::npos ? std::string::npos : name.find('/', first + 1);
  if (second == std::string::npos) return;
  std::string const t = name.substr(0, first), comp = name.substr(first + 1, second - first - 1),
                    row = name.substr(second + 1);
  if (!tables.count(t)) order.push_back(t);
  table& tab = tables[t];
  if (std::find(tab.competitors.begin(), tab.competitors.end(), comp) == tab.competitors.end())
    tab.competitors.push_back(comp);
  if (std::find(tab.rows.begin(), tab.rows.end(), row) == tab.rows.end()) tab.rows.push_back(row);
  long const family = b.value("family_index", 0L);
  for (auto const& key : {"c:" + comp, "r:" + row, std::string("t:")})
    if (auto it = tab.order.find(key); it == tab.order.end() || it->second > family) tab.order[key] = family;
  cell& c = tab.cells[{row, comp}];
  if (aggregate) {
    c.aggregate_seen = true;
    return;
  }
  if (b.value("error_occurred", false)) {
    std::string what = b.value("error_message", "error (no message)");
    if (b.contains("repetition_index") && b.value("repetitions", 1) > 1)
      what += " (repetition " + std::to_string(b.value("repetition_index", 0) + 1) + " of " +
              std::to_string(b.value("repetitions", 1)) + ")";
    c.errors.push_back(what);
    return;
  }
  if (b.contains("bytes_per_second") && b["bytes_per_second"].is_number()) {
    c.rates.push_back(b["bytes_per_second"].get<double>());
    c.bytes = true;
  } else if (b.contains("items_per_second") && b["items_per_second"].is_number()) {
    c.rates.push_back(b["items_per_second"].get<double>());
  } else {
    c.errors.push_back("no rate reported");
  }
  static std::set<std::string> const standard = {"name",
                                                 "run_name",
                                                 "run_type",
                                                 "repetitions",
                                                 "repetition_index",
                                                 "threads",
                                                 "iterations",
                                                 "real_time",
                                                 "cpu_time",
                                                 "time_unit",
                                                 "bytes_per_second",
                                                 "items_per_second",
                                                 "aggregate_name",
                                                 "aggregate_unit",
                                                 "family_index",
                                                 "per_family_instance_index",
                                                 "label",
                                                 "error_occurred",
                                                 "error_message"};
  for (auto const& [k, v] : b.items())
    if (!standard.count(k) && v.is_number()) c.counters[k].push_back(v.get<double>());
}

std::vector<std::string> baselines_of(table const& t) {
  std::vector<std::string> out;
  for (auto const& c : t.competitors)
    if (c.find("kernel") != std::string::npos) out.push_back(c);
  // kernel_pipe, the plain pipe(2), is the one the chart and ratios lead with.
  std::stable_partition(out.begin(), out.end(), [](std::string const& c) { return c == "kernel_pipe"; });
  return out;
}

double median_rate(table const& t, std::string const& row, std::string const& comp) {
  auto it = t.cells.find({row, comp});
  return it == t.cells.end() ? std::nan("") : median(it->second.rates);
}

/// Prints the table; returns how many repetitions failed in it.
std::size_t print(std::string const& name, table const& t, std::regex const& spread) {
  std::vector<std::string> const bases = baselines_of(t);
  std::vector<std::pair<std::string, std::string>> ratios;  // (ours, baseline)
  for (auto const& c : t.competitors)
    if (c.rfind("userpipe", 0) == 0)
      for (auto const& b : bases) ratios.emplace_back(c, b);
  std::vector<std::pair<std::string, std::string>> counter_columns;  // (counter, competitor)
  {
    std::set<std::string> keys;
    for (auto const& [key, c] : t.cells)
      for (auto const& [k, v] : c.counters) keys.insert(k);
    for (auto const& k : keys)
      for (auto const& comp : t.competitors)
        for (auto const& row : t.rows) {
          auto it = t.cells.find({row, comp});
          if (it != t.cells.end() && it->second.counters.count(k)) {
            counter_columns.emplace_back(k, comp);
            break;
          }
        }
  }
  std::size_t failed = 0;
  for (auto const& [key, c] : t.cells) failed += c.errors.size();
  bool const show_spread = std::regex_search(name, spread);

  std::cout << "\n### " << name << "\n\n| row";
  for (auto const& c : t.competitors) std::cout << " | " << c;
  for (auto const& [a, b] : ratios) std::cout << " | " << a << " / " << b;
  if (failed != 0) std::cout << " | errors";
  std::cout << " |\n|---";
  for (std::size_t i = 0; i < t.competitors.size() + ratios.size(); ++i) std::cout << "|---:";
  if (failed != 0) std::cout << "|---";
  std::cout << "|\n";
  for (auto const& row : t.rows) {
    std::cout << "| " << row;
    std::string errors;
    for (auto const& comp : t.competitors) {
      auto it = t.cells.find({row, comp});
      std::cout << " | ";
      if (it == t.cells.end()) continue;
      cell const& c = it->second;
      std::cout << human(median(c.rates), c.bytes);
      if (show_spread && !c.rates.empty())
        std::cout << " (" << human(*std::min_element(c.rates.begin(), c.rates.end()), c.bytes) << " - "
                  << human(*std::max_element(c.rates.begin(), c.rates.end()), c.bytes) << ")";
      if (!c.errors.empty()) {
        std::cout << " FAILED";
        for (auto const& e : c.errors) errors += (errors.empty() ? "" : "; ") + comp + ": " + e;
      }
    }
    for (auto const& [a, b] : ratios) {
      double const x = median_rate(t, row, a), y = median_rate(t, row, b);
      char buf[32] = "";
      if (!std::isnan(x) && !std::isnan(y) && y != 0) std::snprintf(buf, sizeof buf, "%.2fx", x / y);
      std::cout << " | " << buf;
    }
    if (failed != 0) std::cout << " | " << errors;
    std::cout << " |\n";
  }
  if (!counter_columns.empty()) {
    std::cout << "\n| row";
    for (auto const& [k, c] : counter_columns) std::cout << " | " << c << " " << k;
    std::cout << " |\n|---";
    for (std::size_t i = 0; i < counter_columns.size(); ++i) std::cout << "|---:";
    std::cout << "|\n";
    for (auto const& row : t.rows) {
      std::cout << "| " << row;
      for (auto const& [k, comp] : counter_columns) {
        auto it = t.cells.find({row, comp});
        std::cout << " | ";
        if (it != t.cells.end() && it->second.counters.count(k))
          std::cout << number(median(it->second.counters.at(k)));
      }
      std::cout << " |\n";
    }
  }
  std::size_t reps = 0;
  for (auto const& [key, c] : t.cells) reps = std::max(reps, c.rates.size() + c.errors.size());
  std::cout << "\n(" << reps << " repetitions per cell" << (show_spread ? "; median (min - max)" : "")
            << ")\n";
  return failed;
}

/// DIR/<table>.tsv: "row" then each competitor's median / the first baseline's.
void write_chart_data(std::string const& dir, std::string const& name, table const& t) {
  std::vector<std::string> const bases = baselines_of(t);
  if (bases.empty()) return;
  std::ofstream out(dir + "/" + name + ".tsv");
  out << "row";
  for (auto const& c : t.competitors) out << '\t' << c;
  out << '\n';
  for (auto const& row : t.rows) {
    out << pretty_row(row);
    double const base = median_rate(t, row, bases.front());
    for (auto const& c : t.competitors) {
      double const r = median_rate(t, row, c) / base;
      out << '\t';
      if (std::isnan(r) || std::isinf(r))
        out << "NaN";
      else
        out << r;
    }
    out << '\n';
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, table> tables;
  std::vector<std::string> order;
  std::regex spread("stability");
  std::string chart_dir;
  for (int i = 1; i < argc; ++i) {
    std::string const arg = argv[i];
    if ((arg == "--spread" || arg == "--chart-data") && i + 1 < argc) {
      if (arg == "--spread")
        spread = std::regex(argv[++i]);
      else
        chart_dir = argv[++i];
      continue;
    }
    std::ifstream in(arg);
    if (!in) {
      std::cerr << "bench_report: cannot open " << arg << "\n";
      return 1;
    }
    // Google Benchmark writes NaN for the coefficient of variation of a
    // counter that is 0 in every repetition; that is not JSON.
    std::string const text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    static std::regex const not_a_number(R"(:\s*-?(nan|NaN|inf|Infinity)\b)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(std::regex_replace(text, not_a_number, ": null"));
    } catch (std::exception const& e) {
      std::cerr << "bench_report: " << arg << ": " << e.what() << "\n";
      return 1;
    }
    for (auto const& b : j["benchmarks"]) add(tables, order, b);
  }
  for (auto& [name, t] : tables) {
    auto by = [&t](char const* kind) {
      return [&t, kind](std::string const& a, std::string const& b) {
        return t.order[kind + a] < t.order[kind + b];
      };
    };
    std::stable_sort(t.competitors.begin(), t.competitors.end(), by("c:"));
    std::stable_sort(t.rows.begin(), t.rows.end(), by("r:"));
  }
  std::stable_sort(order.begin(), order.end(), [&](std::string const& a, std::string const& b) {
    return tables[a].order["t:"] < tables[b].order["t:"];
  });
  std::size_t failed = 0, hidden = 0;
  for (auto& [name, t] : tables)
    for (auto& [key, c] : t.cells)
      if (c.aggregate_seen && c.rates.empty() && c.errors.empty()) {
        c.errors.push_back("only aggregates in the JSON: failed repetitions would be invisible");
        ++hidden;
      }
  std::cout << "Medians of the repetitions; rates are bytes/s where a benchmark moves bytes, operations/s "
               "otherwise.\n";
  for (auto const& name : order) {
    failed += print(name, tables[name], spread);
    if (!chart_dir.empty()) write_chart_data(chart_dir, name, tables[name]);
  }
  if (failed != 0) {
    std::cerr << "\nbench_report: " << failed << " failed repetition(s)"
              << (hidden != 0 ? " (or aggregates without their repetitions)" : "")
              << "; their rows are marked FAILED above\n";
    return 1;
  }
}
