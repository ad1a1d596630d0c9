// @brief DyAD's evaluation (docs/dyad_model.md, "Scores and the five-fold protocol"): AUROC,
// vehicle scores from snippet scores (the plain mean and the robust top-h-per-mille mean), the
// choice of h on a tuning set, and the five-fold split of the vehicles. python_ref/dyad/
// evaluation.py implements the same, so both pick the same folds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fusedvae::eval {

// Area under the ROC curve of `scores` (higher = more anomalous) for `positive` labels: the
// Mann-Whitney statistic, tied scores counting one half. Throws std::invalid_argument without at
// least one positive and one negative.
double auroc(const std::vector<double>& scores, const std::vector<bool>& positive);

// One point per distinct threshold, from (0, 0) to (1, 1): false and true positive rates.
struct RocCurve {
  std::vector<double> false_positive_rate, true_positive_rate;
};
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive);

// A vehicle's snippet scores and its label.
struct VehicleScores {
  std::string vehicle;
  bool faulty = false;
  std::vector<double> snippets;
  double mean() const;
  // Mean of the top max(round(h / 1000 * n), 1) snippet scores (rounded half up).
  double robust(int h_per_mille) const;
};

// Groups snippet scores by vehicle, in order of first appearance.
std::vector<VehicleScores> group_by_vehicle(const std::vector<std::string>& vehicle,
                                            const std::vector<bool>& faulty,
                                            const std::vector<double>& snippet_score);

// The candidates for h: 50, 100, ..., 950 per mille.
std::vector<int> robust_h_candidates();
// The h whose robust score has the highest AUROC over `vehicles` (the smallest h among equals).
int choose_h(const std::vector<const VehicleScores*>& vehicles);

// The five folds (or `folds`): normal and faulty vehicles each sorted by
// (splitmix64(seed ^ fnv1a64(id)), id) and cut into near-equal consecutive parts, the first
// n % folds parts one longer. Fold f trains on the normal vehicles outside normal part f, tunes h
// on those and faulty part f, and tests on normal part f and the faulty vehicles outside part f.
struct Fold {
  std::vector<std::string> train_normal;  // training set (and the tuning set's normals)
  std::vector<std::string> tuning_faulty;
  std::vector<std::string> test_normal;
  std::vector<std::string> test_faulty;
};
// Throws std::invalid_argument when there are fewer normal or faulty vehicles than folds.
std::vector<Fold> five_fold_split(const std::map<std::string, bool>& vehicle_faulty, uint64_t seed,
                                  int folds = 5);

uint64_t vehicle_key(const std::string& vehicle, uint64_t seed);

}  // namespace fusedvae::eval
