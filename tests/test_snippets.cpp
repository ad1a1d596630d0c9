// @brief The snippet data format (host/data/snippets.h): a good fleet read back exactly, the
// channel choice by name, and every bad input a user can make, each a one-line error naming the
// file and the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "host/data/snippets.h"
#include "host/io/npy.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

namespace fs = std::filesystem;
using data::SnippetSet;

constexpr size_t kSteps = 4, kChannels = 3, kCount = 3;

// An NPY file's bytes with any header text (shapes the writer would refuse included).
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& body) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + body;
}

// A fresh folder per test holding a good fleet (fleet.json, fleet.npy, fleet.csv) that each test
// then spoils in one way.
class Snippets : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::fresh_test_dir("fusedvae_snippets_");
    values_.resize(kCount * kSteps * kChannels);
    for (size_t i = 0; i < values_.size(); ++i) values_[i] = 0.25f * static_cast<float>(i) - 3.0f;
    write_tensor(values_, {kCount, kSteps, kChannels});
    write_manifest(good_manifest());
    write_text("fleet.csv", good_table());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_text(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
  }
  void write_tensor(const std::vector<float>& values, const std::vector<size_t>& shape) const {
    io::write_npy(path("fleet.npy"), values.data(), shape);
  }
  static std::string good_manifest(const std::string& steps = "4",
                                   const std::string& channels = R"(["soc", "current", "volt"])") {
    return R"({"format": "fusedvae-snippets", "version": 1, "data": "fleet.npy", )"
           R"("table": "fleet.csv", "steps": )" +
           steps + R"(, "channels": )" + channels + R"(, "sampling_interval_s": 10})";
  }
  static std::string good_table() {
    return "vehicle,label,mileage,charge_segment\n"
           "car7,00,1200.5,0\n"
           "car7,00,1300,1\n"
           "\n"
           "car9,10,88000,3\n";
  }
  void write_manifest(const std::string& text) const { write_text("fleet.json", text); }
  SnippetSet read() const { return data::read_snippets(path("fleet.json")); }

  // Reading must fail with one line that names `file` and contains `what`.
  void expect_error(const std::string& file, const std::string& what) const {
    try {
      read();
      ADD_FAILURE() << "no error; expected one about " << what;
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path(file)), std::string::npos) << message;
      EXPECT_NE(message.find(what), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }

  fs::path dir_;
  std::vector<float> values_;
};

TEST_F(Snippets, GoodFleetReadsBackExactly) {
  const SnippetSet set = read();
  EXPECT_EQ(set.count, kCount);
  EXPECT_EQ(set.steps, kSteps);
  ASSERT_EQ(set.channel_count(), kChannels);
  EXPECT_EQ(set.channels[2], "volt");
  EXPECT_EQ(set.sampling_interval_s, 10.0);
  EXPECT_EQ(set.values, values_);
  ASSERT_EQ(set.table.size(), kCount);
  EXPECT_EQ(set.table[0].vehicle, "car7");
  EXPECT_FALSE(set.table[1].faulty);
  EXPECT_EQ(set.table[1].mileage, 1300.0);
  EXPECT_EQ(set.table[2].label, "10");
  EXPECT_TRUE(set.table[2].faulty);
  EXPECT_EQ(set.table[2].charge_segment, 3);
}

TEST_F(Snippets, LabelsInWordsAndFloat64Data) {
  write_text("fleet.csv",
             "vehicle,label,mileage,charge_segment\na,normal,0,0\nb,faulty,1,0\nc,000,2,5\n");
  std::vector<double> wide(values_.begin(), values_.end());
  const std::string body(reinterpret_cast<const char*>(wide.data()), wide.size() * 8);
  write_text("fleet.npy", npy_bytes("<f8", "(3, 4, 3)", body));
  const SnippetSet set = read();
  EXPECT_FALSE(set.table[0].faulty);
  EXPECT_TRUE(set.table[1].faulty);
  EXPECT_FALSE(set.table[2].faulty);
  EXPECT_EQ(set.values, values_);
}

TEST_F(Snippets, ChannelsChosenByName) {
  const SnippetSet set = read();
  const std::vector<size_t> input = data::select_channels(set, {"current", "soc"});
  EXPECT_EQ(input, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(data::other_channels(set, input), (std::vector<size_t>{2}));
  for (const auto& [names, what] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"soc", "temp"}, "no channel named 'temp' (it has soc, current, volt)"},
           {{"volt", "volt"}, "channel 'volt' chosen twice"}}) {
    try {
      data::select_channels(set, names);
      ADD_FAILURE() << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path("fleet.json")), std::string::npos) << e.what();
    }
  }
}

TEST_F(Snippets, MissingFiles) {
  fs::remove(path("fleet.csv"));
  expect_error("fleet.csv", ": ");
  fs::remove(path("fleet.npy"));
  expect_error("fleet.npy", ": ");
  fs::remove(path("fleet.json"));
  expect_error("fleet.json", ": ");
}

TEST_F(Snippets, BadManifests) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"format\": ", "not a valid JSON manifest"},
      {"[1, 2]", "must be a JSON object"},
      {R"({"format": "npy", "version": 1})", "\"format\" must be \"fusedvae-snippets\""},
      {R"({"format": "fusedvae-snippets", "version": 2})", "\"version\" must be 1"},
      {R"({"format": "fusedvae-snippets", "version": 1, "colour": 3})",
       "unknown manifest key 'colour'"},
      {R"({"format": "fusedvae-snippets", "version": 1, "table": "t.csv"})", "has no \"data\""},
      {good_manifest("0"), "\"steps\" must be a whole number from 1"},
      {good_manifest("-128"), "\"steps\" must be a whole number from 1"},
      {good_manifest("1e300"), "\"steps\" must be a whole number from 1"},
      {good_manifest("99999999999999999999"), "\"steps\" must be a whole number from 1"},
      {good_manifest("4", "[]"), "\"channels\" must be a list"},
      {good_manifest("4", R"(["soc", "soc", "volt"])"), "channel 'soc' is named twice"},
      {good_manifest("4", R"(["soc", "a,b", "volt"])"), "channel 1 must be a name"},
      {good_manifest("4", R"(["soc", 7, "volt"])"), "channel 1 must be a name"},
  };
  for (const auto& [text, what] : cases) {
    SCOPED_TRACE(text);
    write_manifest(text);
    expect_error("fleet.json", what);
  }
  std::string no_interval = good_manifest();
  no_interval.replace(no_interval.find("10}"), 3, "-1}");
  write_manifest(no_interval);
  expect_error("fleet.json", "\"sampling_interval_s\" must be a number of seconds > 0");
}

TEST_F(Snippets, TensorAgainstManifest) {
  write_tensor(std::vector<float>(kCount * kSteps), {kCount, kSteps});
  expect_error("fleet.npy", "expected [snippets, steps, channels]");
  write_tensor(std::vector<float>(kCount * 5 * kChannels), {kCount, 5, kChannels});
  expect_error("fleet.npy", "snippets of 5 steps, but " + path("fleet.json") + " says 4");
  write_tensor(std::vector<float>(kCount * kSteps * 2), {kCount, kSteps, 2});
  expect_error("fleet.npy", "2 channels, but " + path("fleet.json") + " names 3");
  write_tensor({}, {0, kSteps, kChannels});
  expect_error("fleet.npy", "holds no snippets");
  write_text("fleet.npy", npy_bytes("|u1", "(3, 4, 3)", std::string(36, '\1')));
  expect_error("fleet.npy", "must be float32");
}

TEST_F(Snippets, NonFiniteValuesNamed) {
  std::vector<float> bad = values_;
  bad[(1 * kSteps + 2) * kChannels + 2] = std::numeric_limits<float>::quiet_NaN();
  write_tensor(bad, {kCount, kSteps, kChannels});
  expect_error("fleet.npy", "snippet 1, step 2, channel 'volt' holds NaN or Inf");
  bad = values_;
  bad[5] = -std::numeric_limits<float>::infinity();
  write_tensor(bad, {kCount, kSteps, kChannels});
  expect_error("fleet.npy", "snippet 0, step 1, channel 'volt' holds NaN or Inf");
  std::vector<double> wide(values_.begin(), values_.end());
  wide[0] = 1e300;
  write_text("fleet.npy", npy_bytes("<f8", "(3, 4, 3)",
                                    std::string(reinterpret_cast<const char*>(wide.data()), 288)));
  expect_error("fleet.npy", "beyond float32's range");
}

TEST_F(Snippets, SizesBeyondTheFileOrOverflowing) {
  write_text("fleet.npy", npy_bytes("<f4", "(1000000, 4, 3)", std::string(144, '\0')));
  expect_error("fleet.npy",
               "promises shape (1000000, 4, 3) of float32, 48000000 bytes of data, "
               "the file holds 144");
  write_text("fleet.npy",
             npy_bytes("<f4", "(4294967296, 4294967296, 4294967296)", std::string(144, '\0')));
  expect_error("fleet.npy", "more than 2^64 bytes");
  write_text("fleet.npy", npy_bytes("<f4", "(-3, 4, 3)", std::string(144, '\0')));
  expect_error("fleet.npy", "has a negative dimension");
  write_text("fleet.npy", npy_bytes("<f4", "(3, 4, 3)", std::string(100, '\0')));
  expect_error("fleet.npy", "144 bytes of data, the file holds 100 (truncated");
}

TEST_F(Snippets, BadTables) {
  const std::string header = "vehicle,label,mileage,charge_segment\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty table"},
      {header, "header but no snippets"},
      {"car,label,km,segment\na,00,1,0\n", "line 1: header 'car,label,km,segment'"},
      {header + "a,00,1,0\na,00,2,1\n", "2 snippet rows, but " + path("fleet.npy") + " holds 3"},
      {header + "a,00,1,0\na,00,2,1\na,00,3,2\na,00,4,3\n", "4 snippet rows"},
      {header + "a,00,1,0\nb,bad,2,0\nb,bad,3,1\n", "line 3: label 'bad' is neither"},
      {header + "a,00,1,0\nb,1x,2,0\nb,1x,3,1\n", "line 3: label '1x'"},
      {header + "a,00,1,0\na,00,12 km,1\na,00,3,2\n", "line 3: mileage '12 km' is not a finite"},
      {header + "a,00,1,0\na,00,nan,1\na,00,3,2\n", "line 3: mileage 'nan'"},
      {header + "a,00,-5,0\na,00,1,1\na,00,3,2\n", "line 2: mileage '-5'"},
      {header + "a,00,1,0\na,00,2,1.5\na,00,3,2\n", "line 3: charge segment '1.5' is not a whole"},
      {header + "a,00,1,0\na,00,2,-1\na,00,3,2\n", "line 3: charge segment '-1'"},
      {header + "a,00,1,0\na,00,2\na,00,3,2\n", "line 3 has 3 fields, expected 4"},
      {header + "a,00,1,0\n,00,2,0\na,00,3,2\n", "line 3: vehicle id ''"},
      {header + "a,00,1,0\nb,10,2,0\na,10,3,2\n",
       "vehicle 'a' has label '00' on line 2 and '10' on line 4 (labels are per vehicle)"},
  };
  for (const auto& [text, what] : cases) {
    SCOPED_TRACE(text);
    write_text("fleet.csv", text);
    expect_error("fleet.csv", what);
  }
}

// The Python writer (python_ref/dyad/snippets.py, through the fleet simulator) and this loader
// agree on the format: a small simulated fleet loads with DyAD's channels and per-vehicle labels.
TEST_F(Snippets, ReadsWhatTheSimulatorWrites) {
  const std::string command = std::string(FUSEDVAE_PYTHON) + " " + test::source_dir() +
                              "/python_ref/dyad/fleet_sim.py --out " + dir_.string() +
                              " --name sim --vehicles 6 --prevalence 0.5 --sessions 2 --steps 16"
                              " --cells 12 --modules 4 > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const SnippetSet set = data::read_snippets(path("sim.json"));
  EXPECT_EQ(set.channels, (std::vector<std::string>{"soc", "current", "min_temp", "max_single_volt",
                                                    "max_temp", "min_single_volt", "volt"}));
  EXPECT_EQ(set.steps, 16u);
  EXPECT_EQ(set.sampling_interval_s, 10.0);
  ASSERT_GT(set.count, 0u);
  EXPECT_EQ(set.values.size(), set.count * 16 * 7);
  size_t faulty = 0;
  for (const data::SnippetInfo& row : set.table) faulty += row.faulty;
  EXPECT_GT(faulty, 0u);
  EXPECT_LT(faulty, set.count);
  const std::vector<size_t> input = data::select_channels(set, {"soc", "current"});
  EXPECT_EQ(data::other_channels(set, input), (std::vector<size_t>{2, 3, 4, 5, 6}));
}

TEST_F(Snippets, DecodesFromMemoryAsTheFuzzerDoes) {
  const std::string text = good_manifest();
  const data::SnippetManifest manifest = data::parse_snippet_manifest(
      std::vector<uint8_t>(text.begin(), text.end()), path("fleet.json"));
  EXPECT_EQ(manifest.data_path, path("fleet.npy"));
  EXPECT_EQ(manifest.table_path, path("fleet.csv"));
  const std::string table = good_table();
  const SnippetSet set = data::assemble_snippets(manifest, io::read_npy(path("fleet.npy")),
                                                 std::vector<uint8_t>(table.begin(), table.end()));
  EXPECT_EQ(set.values, values_);
}

}  // namespace
}  // namespace fusedvae
