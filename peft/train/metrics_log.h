// The per-epoch record of a run: DIR/metrics.jsonl (one JSON object per epoch, cli.md), the
// same rows as DIR/metrics.csv for spreadsheets, and DIR/curves.png (loss and top-1 of train and
// val against the epoch). All three are rewritten atomically after each epoch, so a run killed
// at any moment leaves complete files.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace peft {

class MetricsLog {
 public:
  // out_dir "" = keep the rows in memory only.
  explicit MetricsLog(const std::string& out_dir);

  // For --resume: the rows of the first `epochs` epochs already in DIR/metrics.jsonl.
  void keep_first(int64_t epochs);
  // Appends one epoch's row and rewrites the files.
  void add(const nlohmann::json& row);
  const std::vector<nlohmann::json>& rows() const { return rows_; }

  std::string jsonl_path() const;
  std::string csv_path() const;
  std::string plot_path() const;

 private:
  void write() const;
  std::string dir_;
  std::vector<nlohmann::json> rows_;
};

// The rows as CSV: the cli.md keys first in their order, then any others (alphabetical); empty
// cells for null or missing values.
std::string metrics_csv(const std::vector<nlohmann::json>& rows);

}  // namespace peft
