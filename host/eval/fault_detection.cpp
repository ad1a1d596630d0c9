// @brief DyAD's evaluation: AUROC, vehicle scores, the choice of h, the five folds.
#include "host/eval/fault_detection.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace fusedvae::eval {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

void require_both_classes(const std::vector<double>& scores, const std::vector<bool>& positive) {
  if (scores.size() != positive.size())
    throw std::invalid_argument("auroc: " + std::to_string(scores.size()) + " scores for " +
                                std::to_string(positive.size()) + " labels");
  const size_t p = static_cast<size_t>(std::count(positive.begin(), positive.end(), true));
  if (p == 0 || p == positive.size())
    throw std::invalid_argument("auroc needs at least one faulty and one normal vehicle");
}

}  // namespace

double auroc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  require_both_classes(scores, positive);
  const size_t n = scores.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Average ranks (1-based) over runs of tied scores.
  double positive_rank_sum = 0;
  size_t positives = 0;
  for (size_t start = 0; start < n;) {
    size_t end = start;
    while (end + 1 < n && scores[order[end + 1]] == scores[order[start]]) ++end;
    const double rank = (static_cast<double>(start) + static_cast<double>(end)) / 2 + 1;
    for (size_t k = start; k <= end; ++k)
      if (positive[order[k]]) {
        positive_rank_sum += rank;
        ++positives;
      }
    start = end + 1;
  }
  const double p = static_cast<double>(positives), q = static_cast<double>(n - positives);
  return (positive_rank_sum - p * (p + 1) / 2) / (p * q);
}

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive) {
  require_both_classes(scores, positive);
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const double p = static_cast<double>(std::count(positive.begin(), positive.end(), true));
  const double q = static_cast<double>(positive.size()) - p;
  RocCurve roc{{0.0}, {0.0}};
  double tp = 0, fp = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    (positive[order[k]] ? tp : fp) += 1;
    if (k + 1 == order.size() || scores[order[k + 1]] != scores[order[k]]) {
      roc.false_positive_rate.push_back(fp / q);
      roc.true_positive_rate.push_back(tp / p);
    }
  }
  return roc;
}

double VehicleScores::mean() const {
  double sum = 0;
  for (double s : snippets) sum += s;
  return snippets.empty() ? 0.0 : sum / static_cast<double>(snippets.size());
}

double VehicleScores::robust(int h_per_mille) const {
  if (snippets.empty()) return 0.0;
  // round(h / 1000 * n) half up, in integers (in floating point 350 / 1000 * 10 is 3.4999...).
  const size_t n = snippets.size();
  const size_t top = std::max<size_t>(1, (static_cast<size_t>(h_per_mille) * n + 500) / 1000);
  std::vector<double> sorted = snippets;
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  double sum = 0;
  for (size_t k = 0; k < top; ++k) sum += sorted[k];
  return sum / static_cast<double>(top);
}

std::vector<VehicleScores> group_by_vehicle(const std::vector<std::string>& vehicle,
                                            const std::vector<bool>& faulty,
                                            const std::vector<double>& snippet_score) {
  std::vector<VehicleScores> groups;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < vehicle.size(); ++i) {
    auto [it, fresh] = index.emplace(vehicle[i], groups.size());
    if (fresh) groups.push_back({vehicle[i], faulty[i], {}});
    groups[it->second].snippets.push_back(snippet_score[i]);
  }
  return groups;
}

std::vector<int> robust_h_candidates() {
  std::vector<int> h;
  for (int v = 50; v <= 950; v += 50) h.push_back(v);
  return h;
}

int choose_h(const std::vector<const VehicleScores*>& vehicles) {
  std::vector<bool> positive;
  for (const VehicleScores* v : vehicles) positive.push_back(v->faulty);
  int best_h = 0;
  double best = -1;
  for (int h : robust_h_candidates()) {
    std::vector<double> scores;
    for (const VehicleScores* v : vehicles) scores.push_back(v->robust(h));
    const double a = auroc(scores, positive);
    if (a > best) {
      best = a;
      best_h = h;
    }
  }
  return best_h;
}

uint64_t vehicle_key(const std::string& vehicle, uint64_t seed) {
  return splitmix64(seed ^ fnv1a64(vehicle));
}

std::vector<Fold> five_fold_split(const std::map<std::string, bool>& vehicle_faulty, uint64_t seed,
                                  int folds) {
  std::vector<std::string> normal, faulty;
  for (const auto& [vehicle, is_faulty] : vehicle_faulty)
    (is_faulty ? faulty : normal).push_back(vehicle);
  if (folds < 2) throw std::invalid_argument("the protocol needs at least 2 folds");
  if (normal.size() < static_cast<size_t>(folds) || faulty.size() < static_cast<size_t>(folds))
    throw std::invalid_argument(std::to_string(normal.size()) + " normal and " +
                                std::to_string(faulty.size()) + " faulty vehicles cannot make " +
                                std::to_string(folds) + " folds (each needs one of each)");
  // Sorted by key and cut as numpy.array_split cuts: part p holds [start(p), start(p + 1)).
  auto parts = [&](std::vector<std::string> ids) {
    std::sort(ids.begin(), ids.end(), [&](const std::string& a, const std::string& b) {
      const uint64_t ka = vehicle_key(a, seed), kb = vehicle_key(b, seed);
      return ka != kb ? ka < kb : a < b;
    });
    std::vector<std::vector<std::string>> cut(folds);
    const size_t n = ids.size(), base = n / folds, extra = n % folds;
    size_t at = 0;
    for (int p = 0; p < folds; ++p) {
      const size_t size = base + (static_cast<size_t>(p) < extra ? 1 : 0);
      cut[p].assign(ids.begin() + at, ids.begin() + at + size);
      at += size;
    }
    return cut;
  };
  const auto normal_parts = parts(normal), faulty_parts = parts(faulty);
  std::vector<Fold> result(folds);
  for (int f = 0; f < folds; ++f) {
    for (int p = 0; p < folds; ++p) {
      auto& normal_side = p == f ? result[f].test_normal : result[f].train_normal;
      auto& faulty_side = p == f ? result[f].tuning_faulty : result[f].test_faulty;
      normal_side.insert(normal_side.end(), normal_parts[p].begin(), normal_parts[p].end());
      faulty_side.insert(faulty_side.end(), faulty_parts[p].begin(), faulty_parts[p].end());
    }
  }
  return result;
}

}  // namespace fusedvae::eval
