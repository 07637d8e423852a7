// Turns Google Benchmark JSON (run with repetitions) into the tables
// scripts/bench prints: for each table the median rate of every competitor
// per row, and the ratio of each userpipe* competitor to the table's
// baseline (the competitor named kernel_pipe, else the first whose name
// contains "kernel").
//
// Usage: bench_report results.json...
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

struct cell {
  double rate = 0;        // bytes/s if the benchmark counts bytes, else items/s
  bool bytes = false;
  std::map<std::string, double> extra;  // user counters
};

struct table {
  std::vector<std::string> competitors;  // in first-seen order
  std::vector<std::string> rows;
  std::map<std::pair<std::string, std::string>, cell> cells;  // (row, competitor)
};

std::string strip_suffixes(std::string name) {
  for (;;) {
    auto slash = name.rfind('/');
    if (slash == std::string::npos) return name;
    std::string last = name.substr(slash + 1);
    if (last == "real_time" || last == "process_time" || last == "manual_time" || last.rfind("min_time:", 0) == 0 ||
        last.rfind("iterations:", 0) == 0 || last.rfind("repeats:", 0) == 0 || last.rfind("threads:", 0) == 0)
      name.resize(slash);
    else
      return name;
  }
}

std::string human(double rate, bool bytes) {
  char buf[64];
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

void add(std::map<std::string, table>& tables, std::vector<std::string>& order, nlohmann::json const& b) {
  if (b.value("aggregate_name", "") != "median" && b.value("run_type", "") == "aggregate") return;
  if (b.value("run_type", "") == "iteration" && b.contains("repetitions") && b.value("repetitions", 1) > 1) return;
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
  cell c;
  if (b.contains("bytes_per_second")) {
    c.rate = b["bytes_per_second"].get<double>();
    c.bytes = true;
  } else if (b.contains("items_per_second")) {
    c.rate = b["items_per_second"].get<double>();
  }
  static std::set<std::string> const standard = {
      "name", "run_name", "run_type", "repetitions", "repetition_index", "threads", "iterations", "real_time",
      "cpu_time", "time_unit", "bytes_per_second", "items_per_second", "aggregate_name", "aggregate_unit",
      "family_index", "per_family_instance_index", "label", "error_occurred", "error_message"};
  for (auto const& [k, v] : b.items())
    if (!standard.count(k) && v.is_number()) c.extra[k] = v.get<double>();
  tab.cells[{row, comp}] = c;
}

std::string baseline_of(table const& t) {
  for (auto const& c : t.competitors)
    if (c == "kernel_pipe") return c;
  for (auto const& c : t.competitors)
    if (c.find("kernel") != std::string::npos) return c;
  return {};
}

void print(std::string const& name, table const& t) {
  std::string const base = baseline_of(t);
  std::vector<std::string> ours;
  for (auto const& c : t.competitors)
    if (c.rfind("userpipe", 0) == 0 && !base.empty()) ours.push_back(c);

  std::cout << "\n### " << name << "\n\n| " << (name == "create" ? "what" : "row");
  for (auto const& c : t.competitors) std::cout << " | " << c;
  for (auto const& c : ours) std::cout << " | " << c << " / " << base;
  std::cout << " |\n|---";
  for (std::size_t i = 0; i < t.competitors.size() + ours.size(); ++i) std::cout << "|---:";
  std::cout << "|\n";
  for (auto const& row : t.rows) {
    std::cout << "| " << row;
    for (auto const& c : t.competitors) {
      auto it = t.cells.find({row, c});
      std::cout << " | " << (it == t.cells.end() ? "" : human(it->second.rate, it->second.bytes));
    }
    for (auto const& c : ours) {
      auto a = t.cells.find({row, c}), b = t.cells.find({row, base});
      if (a == t.cells.end() || b == t.cells.end() || b->second.rate == 0) {
        std::cout << " | ";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1fx", a->second.rate / b->second.rate);
        std::cout << " | " << buf;
      }
    }
    std::cout << " |\n";
  }
  bool any_extra = false;
  for (auto const& [key, c] : t.cells) any_extra |= !c.extra.empty();
  if (!any_extra) return;
  std::cout << "\n";
  for (auto const& row : t.rows)
    for (auto const& comp : t.competitors) {
      auto it = t.cells.find({row, comp});
      if (it == t.cells.end() || it->second.extra.empty()) continue;
      std::cout << "- " << comp << "/" << row << ":";
      for (auto const& [k, v] : it->second.extra) std::printf(" %s=%.4g", k.c_str(), v);
      std::cout << std::endl;
    }
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, table> tables;
  std::vector<std::string> order;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i]);
    if (!in) {
      std::cerr << "bench_report: cannot open " << argv[i] << "\n";
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
      std::cerr << "bench_report: " << argv[i] << ": " << e.what() << "\n";
      return 1;
    }
    for (auto const& b : j["benchmarks"]) add(tables, order, b);
  }
  std::cout << "Medians of the repetitions; rates are bytes/s where a benchmark moves bytes, operations/s otherwise.\n";
  for (auto const& name : order) print(name, tables[name]);
}
