// The matching definition of docs/curate.md, written the obvious way, for the C++ tests and the fuzz target.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace naive {

inline std::string fold(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return s;
}

inline std::string spacing(const std::string& text) {
  std::string s = " ";
  for (char c : text) {
    switch (c) {
      case ',': case '.': case ';': case ':': case '?': case '!': case '`':
        s += ' ';
        s += c;
        s += ' ';
        break;
      case '\t': case '\n': case '\r':
        s += ' ';
        break;
      default:
        s += c;
    }
  }
  s += ' ';
  return s;
}

inline std::vector<int> metaclip(const std::vector<std::string>& entries, const std::string& text, bool cs) {
  std::map<std::string, int> last;
  for (size_t i = 0; i < entries.size(); ++i) last[cs ? entries[i] : fold(entries[i])] = static_cast<int>(i);
  const std::string s = cs ? spacing(text) : fold(spacing(text));
  std::vector<int> out;
  for (const auto& kv : last) {
    if (s.find(" " + kv.first + " ") != std::string::npos) out.push_back(kv.second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<std::tuple<int, long, long>> substring(const std::vector<std::string>& entries, const std::string& text,
                                                          bool cs) {
  std::vector<std::tuple<int, long, long>> out;
  const std::string t = cs ? text : fold(text);
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string k = cs ? entries[i] : fold(entries[i]);
    for (size_t at = t.find(k); at != std::string::npos; at = t.find(k, at + 1)) {
      out.emplace_back(static_cast<int>(i), static_cast<long>(at), static_cast<long>(at + k.size()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace naive
