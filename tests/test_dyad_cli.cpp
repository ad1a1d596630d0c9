// `fusedvae dyad` and `dyad-score` end to end on a small simulated fleet (python_ref/dyad/
// fleet_sim.py), their bad inputs, and DyAD's evaluation (host/eval/fault_detection.h): AUROC and
// the robust score on hand examples, and the five folds against python_ref/dyad/evaluation.py.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "host/cli/app.h"
#include "host/eval/fault_detection.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Evaluation

TEST(FaultDetection, AurocCountsTiesAsOneHalf) {
  // Positives 0.9 and 0.5; negatives 0.5, 0.1, 0.2. Pairs: (0.9 beats all 3), (0.5 ties one,
  // beats two): (3 + 2.5) / 6.
  EXPECT_DOUBLE_EQ(eval::auroc({0.9, 0.5, 0.5, 0.1, 0.2}, {true, true, false, false, false}),
                   5.5 / 6);
  EXPECT_DOUBLE_EQ(eval::auroc({1, 2, 3, 4}, {false, false, true, true}), 1.0);
  EXPECT_DOUBLE_EQ(eval::auroc({1, 2, 3, 4}, {true, true, false, false}), 0.0);
  EXPECT_THROW(eval::auroc({1, 2}, {true, true}), std::invalid_argument);
  const eval::RocCurve roc = eval::roc_curve({0.9, 0.5, 0.5, 0.1}, {true, true, false, false});
  EXPECT_EQ(roc.false_positive_rate, (std::vector<double>{0, 0, 0.5, 1}));
  EXPECT_EQ(roc.true_positive_rate, (std::vector<double>{0, 0.5, 1, 1}));
}

TEST(FaultDetection, RobustScoreAveragesTheTopShareRoundedHalfUp) {
  eval::VehicleScores v{"car", true, {5, 1, 4, 2, 3, 9, 7, 8, 6, 0}};
  EXPECT_DOUBLE_EQ(v.robust(50), 9.0);                     // round(0.5) = 1 (half up)
  EXPECT_DOUBLE_EQ(v.robust(100), 9.0);                    // 1 snippet
  EXPECT_DOUBLE_EQ(v.robust(350), (9 + 8 + 7 + 6) / 4.0);  // round(3.5) = 4
  EXPECT_DOUBLE_EQ(v.robust(950), (45.0 - 0) / 10);        // round(9.5) = 10: all
  EXPECT_DOUBLE_EQ(v.mean(), 4.5);
  eval::VehicleScores one{"one", false, {2.5}};
  EXPECT_DOUBLE_EQ(one.robust(50), 2.5);  // never fewer than one snippet
}

// The folds of C++ and Python (which the PyTorch peer and the baseline use) are the same.
TEST(FaultDetection, FoldsAgreeWithThePythonEvaluation) {
  std::map<std::string, bool> vehicles;
  for (int i = 0; i < 23; ++i) vehicles["car-" + std::to_string(i * 7 % 23)] = i % 4 == 0;
  const uint64_t seed = 7;
  const std::vector<eval::Fold> folds = eval::five_fold_split(vehicles, seed);
  const std::string dir = test::fresh_test_dir("fusedvae_folds");
  const std::string script = dir + "/folds.py", out = dir + "/folds.json";
  {
    std::ofstream py(script);
    py << "import json, sys\nsys.path.insert(0, "
       << nlohmann::json(test::source_dir() + "/python_ref")
       << ")\nfrom dyad.evaluation import five_fold_split\n"
       << "vehicles = json.loads(" << nlohmann::json(nlohmann::json(vehicles).dump()) << ")\n"
       << "folds = five_fold_split(vehicles, seed=" << seed << ")\n"
       << "json.dump([[f.train, f.tuning, f.test] for f in folds], open(" << nlohmann::json(out)
       << ", 'w'))\n";
  }
  ASSERT_EQ(std::system((std::string(FUSEDVAE_PYTHON) + " " + script).c_str()), 0);
  const nlohmann::json python = nlohmann::json::parse(std::ifstream(out));
  ASSERT_EQ(python.size(), folds.size());
  auto as_set = [](const std::vector<std::string>& a, const std::vector<std::string>& b = {}) {
    std::set<std::string> s(a.begin(), a.end());
    s.insert(b.begin(), b.end());
    return s;
  };
  for (size_t f = 0; f < folds.size(); ++f) {
    const auto train = python[f][0].get<std::vector<std::string>>();
    const auto tuning = python[f][1].get<std::vector<std::string>>();
    const auto test = python[f][2].get<std::vector<std::string>>();
    EXPECT_EQ(as_set(folds[f].train_normal), as_set(train)) << "fold " << f;
    EXPECT_EQ(as_set(folds[f].train_normal, folds[f].tuning_faulty), as_set(tuning)) << f;
    EXPECT_EQ(as_set(folds[f].test_normal, folds[f].test_faulty), as_set(test)) << "fold " << f;
    EXPECT_FALSE(folds[f].tuning_faulty.empty());
  }
  fs::remove_all(dir);
}

// The presets of the CLI and of the PyTorch peer are DyAD's same four configurations (the peer's
// table needs torch to import; without it the test reports skipped).
TEST(DyadPresets, AgreeWithThePyTorchPeer) {
  const std::string dir = test::fresh_test_dir("fusedvae_presets");
  const std::string out = dir + "/presets.json";
  const std::string command = std::string(FUSEDVAE_PYTHON) +
                              " -c \"import json, sys; sys.path.insert(0, '" + test::source_dir() +
                              "/python_ref'); from dyad import dyad_torch; json.dump(" +
                              "dyad_torch.PRESETS, open('" + out + "', 'w'))\" 2> /dev/null";
  if (std::system(command.c_str()) != 0) {
    fs::remove_all(dir);
    GTEST_SKIP() << "python_ref/dyad/dyad_torch.py does not import (no torch?)";
  }
  const nlohmann::json python = nlohmann::json::parse(std::ifstream(out));
  ASSERT_EQ(python.size(), cli::dyad_presets().size());
  for (const cli::DyadPreset& p : cli::dyad_presets()) {
    SCOPED_TRACE(p.name);
    const nlohmann::json& q = python.at(p.name);
    EXPECT_EQ(q.at("hidden"), p.hidden);
    EXPECT_EQ(q.at("layers"), p.layers);
    EXPECT_EQ(q.at("latent"), p.latent);
    EXPECT_EQ(q.at("batch"), p.batch_size);
    EXPECT_EQ(q.at("epochs"), p.epochs);
    for (const auto& [key, value] :
         std::vector<std::pair<const char*, float>>{{"lr", p.lr},
                                                    {"noise_scale", p.noise_scale},
                                                    {"anneal0", p.anneal0},
                                                    {"nll_weight", p.nll_weight},
                                                    {"label_weight", p.label_weight},
                                                    {"cosine_factor", p.cosine_factor}})
      EXPECT_EQ(static_cast<float>(q.at(key).get<double>()), value) << key;
    EXPECT_EQ(q.at("decoder_input").get<std::vector<std::string>>(), p.decoder_channels);
  }
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The commands

class DyadCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // (fresh_test_dir names its folder after the running test; none runs yet here.)
    dir_ = new std::string(
        (fs::temp_directory_path() / ("fusedvae_dyad_cli_" + std::to_string(::getpid()))).string());
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    // 30 vehicles, 9 of them faulty, 3 sessions of 2 snippets of 16 steps: seconds to train.
    const std::string command = std::string(FUSEDVAE_PYTHON) + " " + test::source_dir() +
                                "/python_ref/dyad/fleet_sim.py --out " + *dir_ +
                                " --vehicles 30 --prevalence 0.3 --sessions 3 "
                                "--snippets-per-session 2 --steps 16 > /dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static std::string run(const std::vector<std::string>& args) {
    std::ostringstream out;
    cli::run_cli(args, out, false, cli::load_run_data);
    return out.str();
  }
  static std::string error_of(const std::vector<std::string>& args) {
    try {
      run(args);
    } catch (const std::exception& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      return message;
    }
    ADD_FAILURE() << "no error";
    return "";
  }
  static std::vector<std::string> small_run(const std::string& run_dir) {
    return {"dyad", "--data",   fleet(), "--run-dir",    run_dir, "--epochs", "2",  "--hidden",
            "8",    "--latent", "4",     "--batch-size", "8",     "--device", "cpu"};
  }
  static std::string fleet() { return *dir_ + "/fleet.json"; }
  static std::string* dir_;
};
std::string* DyadCli::dir_ = nullptr;

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    std::string cell;
    while (std::getline(s, cell, ',')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

TEST_F(DyadCli, FiveFoldsWriteModelsScoresAndPictures) {
  const std::string run_dir = *dir_ + "/run";
  const std::string printed = run(small_run(run_dir));
  EXPECT_NE(printed.find("AUROC over 5 folds"), std::string::npos) << printed;
  const nlohmann::json summary = nlohmann::json::parse(std::ifstream(run_dir + "/summary.json"));
  ASSERT_EQ(summary.at("folds").size(), 5u);
  for (const nlohmann::json& f : summary.at("folds")) {
    EXPECT_GE(f.at("auroc_robust").get<double>(), 0.0);
    EXPECT_LE(f.at("auroc_robust").get<double>(), 1.0);
  }
  for (const char* png : {"roc.png", "vehicle_scores.png"})
    EXPECT_GT(fs::file_size(run_dir + "/" + png), 1000u) << png;
  const auto snippets = read_csv(run_dir + "/fold2/snippet_scores.csv");
  const auto fleet_rows = read_csv(*dir_ + "/fleet.csv");
  EXPECT_EQ(snippets.size(), fleet_rows.size());  // a header and one row per snippet each
  const auto vehicles = read_csv(run_dir + "/fold2/vehicle_scores.csv");
  EXPECT_EQ(vehicles.size(), 31u);
  std::map<std::string, int> roles;
  for (size_t i = 1; i < vehicles.size(); ++i) roles[vehicles[i][2]] += 1;
  EXPECT_EQ(roles["train"] + roles["tuning"] + roles["test"], 30);
  EXPECT_GT(roles["tuning"], 0);

  // dyad-score with fold 2's model on the same fleet gives the fold's own snippet scores.
  const std::string scored = *dir_ + "/scored";
  run({"dyad-score", "--fold-dir", run_dir + "/fold2", "--data", fleet(), "--out", scored,
       "--device", "cpu"});
  const auto rescored = read_csv(scored + "/snippet_scores.csv");
  ASSERT_EQ(rescored.size(), snippets.size());
  for (size_t i = 1; i < rescored.size(); ++i)
    EXPECT_EQ(rescored[i].back(), snippets[i].back()) << "snippet " << i - 1;

  // `fusedvae eval` on the run re-scores every fold from its checkpoint: the same AUROCs.
  const std::string evaluated = run({"eval", "--run-dir", run_dir, "--device", "cpu"});
  EXPECT_NE(evaluated.find("AUROC over 5 folds"), std::string::npos) << evaluated;
  const nlohmann::json eval_json = nlohmann::json::parse(std::ifstream(run_dir + "/eval.json"));
  for (size_t f = 0; f < 5; ++f) {
    EXPECT_EQ(eval_json.at("folds")[f].at("auroc_robust"),
              summary.at("folds")[f].at("auroc_robust"));
    EXPECT_EQ(eval_json.at("folds")[f].at("h"), summary.at("folds")[f].at("h"));
  }

  // PyTorch loads the fold's checkpoint (names, shapes, channels, normalisation) and scores the
  // same (tests/scripts/check_dyad_model.py; exit 77 without torch).
  const std::string check = std::string(FUSEDVAE_PYTHON) + " " + test::source_dir() +
                            "/tests/scripts/check_dyad_model.py " + run_dir + "/fold2 " + fleet();
  const int status = std::system(check.c_str());
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 77)) EXPECT_EQ(status, 0) << check;

  // The same seed gives the same scores, bit for bit (printed with 9 digits).
  const std::string again = *dir_ + "/again";
  std::vector<std::string> args = small_run(again);
  args.insert(args.end(), {"--fold", "2"});
  run(args);
  EXPECT_EQ(read_csv(again + "/fold2/snippet_scores.csv"), snippets);
}

TEST_F(DyadCli, BadInputsAreOneLineErrorsThatSayWhatToDo) {
  EXPECT_NE(error_of({"dyad"}).find("fleet_sim.py --out fleet"), std::string::npos);
  EXPECT_NE(error_of({"dyad", "--data", *dir_ + "/missing.json"}).find("missing.json"),
            std::string::npos);
  std::vector<std::string> args = small_run(*dir_ + "/bad");
  args.insert(args.end(), {"--decoder-channels", "soc,speed"});
  EXPECT_NE(error_of(args).find("speed"), std::string::npos);
  args = small_run(*dir_ + "/bad");
  args.insert(args.end(), {"--fold", "5"});
  EXPECT_NE(error_of(args).find("folds are 0 to 4"), std::string::npos);
  args = small_run(*dir_ + "/bad");
  args.insert(args.end(), {"--preset", "dyad-brand9"});
  EXPECT_NE(error_of(args).find("dyad-fivefold"), std::string::npos);
  args = small_run(*dir_ + "/bad");
  args.insert(args.end(), {"--folds", "20"});
  EXPECT_NE(error_of(args).find("cannot make 20 folds"), std::string::npos);
  // A run directory that holds files is never overwritten without --overwrite.
  fs::create_directories(*dir_ + "/taken");
  std::ofstream(*dir_ + "/taken/keep.txt") << "a user's file";
  EXPECT_NE(error_of(small_run(*dir_ + "/taken")).find("--overwrite"), std::string::npos);
  EXPECT_TRUE(fs::exists(*dir_ + "/taken/keep.txt"));
  // A user who reads "--model dyad" somewhere is sent to the command.
  EXPECT_NE(error_of({"train", "--model", "dyad"}).find("fusedvae dyad"), std::string::npos);
  EXPECT_NE(error_of({"dyad-score", "--fold-dir", *dir_ + "/nowhere", "--data", fleet(), "--out",
                      *dir_ + "/x"})
                .find("nowhere"),
            std::string::npos);
}

}  // namespace
}  // namespace fusedvae
