// @brief The dataset loaders (IDX raw/gz, NPY, CSV), the front end (sources, validation split,
// normalisation) and every error path, on small files this test writes; and the real
// Fashion-MNIST when its Debian package is installed.
#include <gtest/gtest.h>
#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "host/data/file_bytes.h"
#include "host/data/load.h"
#include "host/io/memory_check.h"

namespace fusedvae {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A fresh directory per test, removed afterwards.
class DataFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("fusedvae_data_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write(const std::string& name, const Bytes& bytes) const {
    std::ofstream out(path(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path(name);
  }
  std::string write_text(const std::string& name, const std::string& text) const {
    return write(name, Bytes(text.begin(), text.end()));
  }
  std::string write_gz(const std::string& name, const Bytes& bytes) const {
    gzFile f = gzopen(path(name).c_str(), "wb");
    EXPECT_NE(f, nullptr);
    if (!bytes.empty()) gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return path(name);
  }
  Bytes read(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  fs::path dir_;
};

Bytes idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(d >> shift));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// An NPY 1.0 file: magic, version, little-endian header length, the header dict padded with
// spaces so the data starts on a 64-byte boundary, then the raw bytes.
Bytes npy_with_shape_text(const std::string& descr, const std::string& dims, const void* data,
                          size_t data_bytes) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const uint8_t prefix[10] = {0x93,
                              'N',
                              'U',
                              'M',
                              'P',
                              'Y',
                              1,
                              0,
                              static_cast<uint8_t>(header.size() & 0xff),
                              static_cast<uint8_t>(header.size() >> 8)};
  Bytes b(sizeof(prefix) + header.size() + data_bytes);
  std::memcpy(b.data(), prefix, sizeof(prefix));
  std::memcpy(b.data() + sizeof(prefix), header.data(), header.size());
  if (data_bytes > 0) std::memcpy(b.data() + sizeof(prefix) + header.size(), data, data_bytes);
  return b;
}

Bytes npy_bytes(const std::string& descr, const std::vector<size_t>& shape, const void* data,
                size_t data_bytes) {
  std::string dims;
  for (size_t d : shape) dims += std::to_string(d) + ", ";
  return npy_with_shape_text(descr, dims, data, data_bytes);
}

template <typename T>
Bytes npy_of(const std::string& descr, const std::vector<size_t>& shape, const std::vector<T>& v) {
  return npy_bytes(descr, shape, v.data(), v.size() * sizeof(T));
}

Bytes random_bytes(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  Bytes v(count);
  for (auto& b : v) b = static_cast<uint8_t>(gen() & 0xff);
  return v;
}

// Runs `load`, expects an exception of type E whose message is one line containing every
// fragment (the file name among them).
template <typename E = std::runtime_error>
void expect_error(const std::function<void()>& load, const std::vector<std::string>& fragments) {
  try {
    load();
    ADD_FAILURE() << "no exception; expected one mentioning " << fragments[0];
  } catch (const E& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    for (const auto& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "message lacks '" << fragment << "': " << message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

Dataset load(const std::string& path, const std::string& labels = "",
             const std::string& label_column = "") {
  return load_dataset(path, labels, DataFormat::kAuto, label_column);
}

// ----------------------------------------------------------------------------------------------
// IDX

TEST_F(DataFiles, IdxRawAndGzipHoldTheSameImagesAndLabels) {
  const Bytes pixels = random_bytes(5 * 3 * 2, 1);
  const Bytes labels = {3, 1, 4, 1, 5};
  const Bytes images_idx = idx_bytes(0x08, {5, 3, 2}, pixels);
  const Bytes labels_idx = idx_bytes(0x08, {5}, labels);
  const Dataset raw =
      load(write("a-images-idx3-ubyte", images_idx), write("a-labels-idx1-ubyte", labels_idx));
  const Dataset gz = load(write_gz("b-images-idx3-ubyte.gz", images_idx),
                          write_gz("b-labels-idx1-ubyte.gz", labels_idx));
  for (const Dataset* d : {&raw, &gz}) {
    EXPECT_EQ(d->rows, 5);
    EXPECT_EQ(d->dim, 6);
    EXPECT_EQ(d->image_height, 3);
    EXPECT_EQ(d->image_width, 2);
    EXPECT_EQ(d->u8, pixels);
    EXPECT_TRUE(d->f32.empty());
    EXPECT_EQ(d->labels, std::vector<int32_t>(labels.begin(), labels.end()));
    EXPECT_EQ(d->scale, 1.0f / 255.0f);
  }
}

TEST_F(DataFiles, IdxTwoDimensionalRowsAndNoLabels) {
  const Bytes values = random_bytes(4 * 7, 2);
  const Dataset d = load(write("rows.idx", idx_bytes(0x08, {4, 7}, values)));
  EXPECT_EQ(d.rows, 4);
  EXPECT_EQ(d.dim, 7);
  EXPECT_EQ(d.image_height, 0);
  EXPECT_TRUE(d.labels.empty());
  EXPECT_EQ(d.u8, values);
}

TEST_F(DataFiles, GzipDetectedByMagicNotNameAndMembersConcatenate) {
  const Bytes images = idx_bytes(0x08, {3, 2, 2}, random_bytes(12, 3));
  // Two gzip members, as `cat a.gz b.gz` makes, under a name without .gz.
  const Bytes first(images.begin(), images.begin() + 9), second(images.begin() + 9, images.end());
  write_gz("first.gz", first);
  write_gz("second.gz", second);
  Bytes joined = read("first.gz");
  const Bytes tail = read("second.gz");
  joined.insert(joined.end(), tail.begin(), tail.end());
  const Dataset d = load_dataset(write("joined", joined), "", DataFormat::kIdx, "");
  EXPECT_EQ(d.rows, 3);
  EXPECT_EQ(d.u8, Bytes(images.begin() + 16, images.end()));
}

TEST_F(DataFiles, IdxErrorsNameTheFileAndTheProblem) {
  const Bytes good = idx_bytes(0x08, {4, 2, 2}, random_bytes(16, 4));
  expect_error([&] { load(path("missing-idx3-ubyte")); }, {"missing-idx3-ubyte", "cannot open"});
  const std::string empty = write("empty-idx3-ubyte", {});
  expect_error([&] { load(empty); }, {empty, "not an IDX file"});
  Bytes bad_magic = good;
  bad_magic[0] = 0x12;
  const std::string magic = write("magic-idx3-ubyte", bad_magic);
  expect_error([&] { load(magic); }, {magic, "not an IDX file", "12 00 08 03"});
  const std::string floats = write("float-idx3-ubyte", idx_bytes(0x0D, {1, 1, 1}, {0, 0, 0, 0}));
  expect_error([&] { load(floats); }, {floats, "element type 0x0d"});
  const std::string rank = write("rank-idx3-ubyte", idx_bytes(0x08, {1, 1, 1, 1}, {7}));
  expect_error([&] { load(rank); }, {rank, "rank 4"});
  const std::string zero = write("zero-idx3-ubyte", idx_bytes(0x08, {0, 2, 2}, {}));
  expect_error([&] { load(zero); }, {zero, "is zero"});
  const std::string header = write("header-idx3-ubyte", Bytes(good.begin(), good.begin() + 9));
  expect_error([&] { load(header); }, {header, "truncated IDX header"});
  const std::string truncated = write("trunc-idx3-ubyte", Bytes(good.begin(), good.end() - 1));
  expect_error([&] { load(truncated); }, {truncated, "truncated IDX data", "16", "15"});
  Bytes longer = good;
  longer.push_back(0);
  const std::string trailing = write("long-idx3-ubyte", longer);
  expect_error([&] { load(trailing); }, {trailing, "1 bytes beyond"});
  // Sizes from the header are checked against the file before anything is allocated.
  const std::string huge = write("huge-idx3-ubyte", idx_bytes(0x08, {100000, 100000, 100000}, {1}));
  expect_error([&] { load(huge); },
               {huge, "promises 100000 x 100000 x 100000 = 1000000000000000 bytes", "holds 1"});
  const std::string wide =
      write("wide-idx3-ubyte", idx_bytes(0x08, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1}));
  expect_error([&] { load(wide); }, {wide, "4294967295 x 4294967295 x 4294967295", "holds 1"});
  const std::string images = write("ok-idx3-ubyte", good);
  const std::string labels = write("few-idx1-ubyte", idx_bytes(0x08, {3}, {1, 2, 3}));
  expect_error([&] { load(images, labels); }, {labels, "3 labels for 4 images", images});
  const std::string label_rank = write("rank2-idx1-ubyte", idx_bytes(0x08, {4, 1}, {1, 2, 3, 4}));
  expect_error([&] { load(images, label_rank); }, {label_rank, "rank 2, expected 1"});
}

TEST_F(DataFiles, TruncatedOrCorruptGzipIsAnError) {
  const Bytes images = idx_bytes(0x08, {50, 8, 8}, random_bytes(50 * 64, 5));
  write_gz("whole.gz", images);
  const Bytes gz = read("whole.gz");
  const std::string cut = write("cut-idx3-ubyte.gz", Bytes(gz.begin(), gz.begin() + gz.size() / 2));
  expect_error([&] { load(cut); }, {cut, "truncated gzip"});
  Bytes corrupt = gz;
  for (size_t i = 20; i < 40; ++i) corrupt[i] ^= 0x5a;
  const std::string bad = write("bad-idx3-ubyte.gz", corrupt);
  expect_error([&] { load(bad); }, {bad, "gzip"});
}

// ----------------------------------------------------------------------------------------------
// NPY

TEST_F(DataFiles, NpyEveryDtype) {
  const std::vector<float> f32 = {0.5f, -1.25f, 3.0f, 7.5f, 1e-3f, 2.0f};
  const std::vector<double> f64 = {0.1, -2.0, 1e10, 4.0, 5.0, -6.5};
  const Bytes u8 = random_bytes(2 * 3 * 1, 6);
  const Dataset a = load(write("a.npy", npy_of("<f4", {2, 3}, f32)));
  EXPECT_EQ(a.f32, f32);
  EXPECT_EQ(a.rows, 2);
  EXPECT_EQ(a.dim, 3);
  const Dataset b = load(write("b.npy", npy_of("<f8", {3, 2}, f64)));
  EXPECT_EQ(b.rows, 3);
  for (size_t i = 0; i < f64.size(); ++i) EXPECT_EQ(b.f32[i], static_cast<float>(f64[i]));
  const Dataset c = load(write("c.npy", npy_of("|u1", {2, 3, 1}, u8)));
  EXPECT_EQ(c.u8, u8);
  EXPECT_EQ(c.dim, 3);
  EXPECT_EQ(c.image_height, 3);
  EXPECT_EQ(c.image_width, 1);
}

TEST_F(DataFiles, NpyLabelsOfEachIntegerDtypeAndWholeFloats) {
  const std::string data = write("x.npy", npy_of("<f4", {3, 1}, std::vector<float>{1, 2, 3}));
  const std::vector<int32_t> expected = {2, 0, 9};
  EXPECT_EQ(load(data, write("l8.npy", npy_of("|u1", {3}, Bytes{2, 0, 9}))).labels, expected);
  EXPECT_EQ(load(data, write("l32.npy", npy_of("<i4", {3}, std::vector<int32_t>{2, 0, 9}))).labels,
            expected);
  EXPECT_EQ(
      load(data, write("l64.npy", npy_of("<i8", {3, 1}, std::vector<int64_t>{2, 0, 9}))).labels,
      expected);
  EXPECT_EQ(load(data, write("lf.npy", npy_of("<f8", {3}, std::vector<double>{2, 0, 9}))).labels,
            expected);
}

TEST_F(DataFiles, NpyErrors) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::string ints = write("ints.npy", npy_of("<i4", {2, 2}, std::vector<int32_t>(4, 1)));
  expect_error([&] { load(ints); }, {ints, "float32, float64 or uint8"});
  const std::string flat = write("flat.npy", npy_of("<f4", {4}, std::vector<float>(4, 1)));
  expect_error([&] { load(flat); }, {flat, "(4)", "expected [rows, features]"});
  const std::string four = write("four.npy", npy_of("<f4", {1, 1, 2, 2}, std::vector<float>(4)));
  expect_error([&] { load(four); }, {four, "(1, 1, 2, 2)"});
  const std::string none = write("none.npy", npy_of("<f4", {0, 3}, std::vector<float>{}));
  expect_error([&] { load(none); }, {none, "holds no data"});
  std::vector<float> with_nan(12, 0.5f);
  with_nan[2 * 4 + 1] = static_cast<float>(nan);
  const std::string f32_nan = write("nan.npy", npy_of("<f4", {3, 4}, with_nan));
  expect_error([&] { load(f32_nan); }, {f32_nan, "row 2 holds NaN or Inf", "column 1"});
  std::vector<double> with_inf(12, 0.5);
  with_inf[1 * 4 + 3] = -inf;
  const std::string f64_inf = write("inf.npy", npy_of("<f8", {3, 4}, with_inf));
  expect_error([&] { load(f64_inf); }, {f64_inf, "row 1 holds NaN or Inf"});
  std::vector<double> huge(4, 0.5);
  huge[3] = 1e300;
  const std::string f64_huge = write("huge.npy", npy_of("<f8", {2, 2}, huge));
  expect_error([&] { load(f64_huge); }, {f64_huge, "row 1", "float32's range"});
  const std::string data = write("x.npy", npy_of("<f4", {3, 1}, std::vector<float>{1, 2, 3}));
  const std::string two = write("two.npy", npy_of("|u1", {2}, Bytes{1, 2}));
  expect_error([&] { load(data, two); }, {two, "2 labels for 3 rows"});
  const std::string half = write("half.npy", npy_of("<f4", {3}, std::vector<float>{1, 2.5f, 3}));
  expect_error([&] { load(data, half); }, {half, "row 1", "not a whole number"});
  // The same header with fortran_order True ("True " keeps the header length).
  Bytes fortran_bytes = npy_of("<f4", {1, 1}, std::vector<float>{1});
  const std::string needle = "False", replacement = "True ";
  std::copy(replacement.begin(), replacement.end(),
            std::search(fortran_bytes.begin(), fortran_bytes.end(), needle.begin(), needle.end()));
  const std::string fortran = write("f.npy", fortran_bytes);
  expect_error([&] { load(fortran); }, {fortran, "Fortran"});
}

// Sizes read from the header are checked against the file (and against overflow) before anything
// is allocated: a negative dimension used to be read as positive, a huge shape ended in
// std::bad_alloc.
TEST_F(DataFiles, NpyHeaderSizesAreCheckedAgainstTheFile) {
  const std::vector<float> ten(10 * 4, 0.5f);
  const std::string negative =
      write("negative.npy", npy_with_shape_text("<f4", "-10, 4", ten.data(), ten.size() * 4));
  expect_error([&] { load(negative); }, {negative, "(-10, 4)", "negative dimension"});
  const std::string negative_last =
      write("negative2.npy", npy_with_shape_text("<f4", "10, -4", ten.data(), ten.size() * 4));
  expect_error([&] { load(negative_last); }, {negative_last, "negative dimension"});
  const std::string huge = write("huge_shape.npy", npy_with_shape_text("<f4", "100000000000, 784",
                                                                       ten.data(), ten.size() * 4));
  expect_error([&] { load(huge); }, {huge, "promises shape (100000000000, 784) of float32",
                                     "313600000000000 bytes", "the file holds 160"});
  const std::string overflow =
      write("overflow.npy",
            npy_with_shape_text("<f8", "4294967296, 4294967296, 16", ten.data(), ten.size() * 4));
  expect_error([&] { load(overflow); }, {overflow, "more than 2^64 bytes", "160"});
  const std::string wide =
      write("wide.npy", npy_with_shape_text("<f4", "99999999999999999999999, 4", ten.data(), 160));
  expect_error([&] { load(wide); }, {wide, "beyond 64 bits"});
  const std::string text =
      write("text.npy", npy_with_shape_text("<f4", "10, four", ten.data(), 160));
  expect_error([&] { load(text); }, {text, "(10, four)", "malformed"});
  const std::string extra =
      write("extra.npy", npy_with_shape_text("<f4", "9, 4", ten.data(), ten.size() * 4));
  expect_error([&] { load(extra); }, {extra, "144 bytes of data, the file holds 160", "extra"});
  // The header length itself promises more than the file has.
  Bytes cut = npy_of("<f4", {10, 4}, ten);
  cut.resize(40);
  const std::string short_header = write("short_header.npy", cut);
  expect_error([&] { load(short_header); }, {short_header, "truncated NPY header"});
  // A well-formed file round-trips (Python 2 long literals included).
  EXPECT_EQ(load(write("long.npy", npy_with_shape_text("<f4", "10L, 4L", ten.data(), 160))).rows,
            10);
}

// Data larger than the memory the machine has available is refused with both sizes before any
// allocation (a file that large cannot be made here, so the check itself is called).
TEST(DataMemory, TooMuchDataIsRefusedWithTheSizes) {
  try {
    io::check_fits_in_memory("big.npy", uint64_t{1} << 60, "reading the array");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("big.npy: reading the array needs 1099511627776 MiB of memory"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("MiB are available"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(io::check_fits_in_memory("small.npy", 1024, "reading the array"));
}

// The GPU's check (train's, before the upload) with the free memory its runtime reports: here the
// figure is given, so the rule and the message are tested without a GPU.
TEST(DataMemory, TooMuchDataForTheGpuIsRefusedWithTheSizes) {
  const uint64_t mib = uint64_t{1} << 20;
  try {
    io::check_fits_in_device_memory("train.npy", 3000 * mib, 2048 * mib, "NVIDIA H100");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "train.npy: the data needs 3000 MiB of GPU memory, 2048 MiB are free on NVIDIA "
              "H100; train with --device cpu, or on less data");
  }
  EXPECT_NO_THROW(io::check_fits_in_device_memory("train.npy", 2048 * mib, 2048 * mib, "gpu"));
}

// ----------------------------------------------------------------------------------------------
// CSV

TEST_F(DataFiles, CsvWithAndWithoutHeader) {
  const std::string plain = write_text("plain.csv", "1,2.5,-3\n4,5e-1,6\n\n");
  const Dataset a = load(plain);
  EXPECT_EQ(a.rows, 2);
  EXPECT_EQ(a.dim, 3);
  EXPECT_EQ(a.f32, (std::vector<float>{1, 2.5f, -3, 4, 0.5f, 6}));
  EXPECT_TRUE(a.labels.empty());
  // Header, CRLF endings, spaces around cells, blank lines in between.
  const std::string header =
      write_text("header.csv", "label, x0 ,x1\r\n7, 0.25, 1\r\n\r\n2,0.75 ,-1\r\n");
  const Dataset b = load(header, "", "label");
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.dim, 2);
  EXPECT_EQ(b.f32, (std::vector<float>{0.25f, 1, 0.75f, -1}));
  EXPECT_EQ(b.labels, (std::vector<int32_t>{7, 2}));
  const Dataset c = load(plain, "", "2");
  EXPECT_EQ(c.dim, 2);
  EXPECT_EQ(c.f32, (std::vector<float>{1, 2.5f, 4, 0.5f}));
  EXPECT_EQ(c.labels, (std::vector<int32_t>{-3, 6}));
  const Dataset d = load(header);  // the header's label column is data when not chosen
  EXPECT_EQ(d.dim, 3);
  EXPECT_EQ(d.f32[0], 7.0f);
}

TEST_F(DataFiles, CsvGzipped) {
  const std::string text = "a,b\n1,2\n3,4\n";
  const Dataset d = load(write_gz("t.csv.gz", Bytes(text.begin(), text.end())));
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.f32, (std::vector<float>{1, 2, 3, 4}));
}

TEST_F(DataFiles, CsvErrorsNameFileAndLine) {
  const std::string ragged = write_text("ragged.csv", "x,y,z\n1,2,3\n\n4,5\n");
  expect_error([&] { load(ragged); }, {ragged, "line 4 has 2 fields, expected 3"});
  const std::string word = write_text("word.csv", "1,2\n3,abc\n");
  expect_error([&] { load(word); }, {word, "line 2, column 1", "'abc' is not a number"});
  const std::string blank_cell = write_text("blank.csv", "1,2\n3,\n");
  expect_error([&] { load(blank_cell); }, {blank_cell, "line 2, column 1"});
  const std::string nan = write_text("nan.csv", "h1,h2\n1,2\n3,4\nnan,5\n");
  expect_error([&] { load(nan); }, {nan, "row 2 (line 4) holds NaN or Inf"});
  const std::string inf = write_text("inf.csv", "1,-inf\n");
  expect_error([&] { load(inf); }, {inf, "row 0 (line 1) holds NaN or Inf"});
  const std::string huge = write_text("huge.csv", "1,2\n1e39,0\n");
  expect_error([&] { load(huge); }, {huge, "row 1 (line 2)", "float32's range"});
  const std::string empty = write_text("empty.csv", "\n \n");
  expect_error([&] { load(empty); }, {empty, "empty CSV"});
  const std::string header_only = write_text("head.csv", "a,b\n");
  expect_error([&] { load(header_only); }, {header_only, "no data rows"});
  const std::string plain = write_text("plain.csv", "1,2\n3,4\n");
  expect_error([&] { load(plain, "", "2"); }, {plain, "label column 2 is out of range"});
  expect_error([&] { load(plain, "", "label"); }, {plain, "no column named 'label'", "no header"});
  const std::string half = write_text("half.csv", "1,2\n3,4.5\n");
  expect_error([&] { load(half, "", "1"); }, {half, "line 2", "not a whole number"});
  const std::string one = write_text("one.csv", "1\n2\n");
  expect_error([&] { load(one, "", "0"); }, {one, "no data columns"});
}

// ----------------------------------------------------------------------------------------------
// Front end

TEST(DataFormatDetection, ByExtension) {
  EXPECT_EQ(detect_format("/a/train-images-idx3-ubyte.gz"), DataFormat::kIdx);
  EXPECT_EQ(detect_format("t10k-labels.idx1-ubyte"), DataFormat::kIdx);
  EXPECT_EQ(detect_format("x.NPY"), DataFormat::kNpy);
  EXPECT_EQ(detect_format("x.csv"), DataFormat::kCsv);
  EXPECT_EQ(detect_format("x.csv.gz"), DataFormat::kCsv);
  expect_error<std::invalid_argument>([] { detect_format("/d/data.bin"); },
                                      {"/d/data.bin", "cannot tell the data format"});
  DataFormat f;
  for (DataFormat g : {DataFormat::kAuto, DataFormat::kIdx, DataFormat::kNpy, DataFormat::kCsv}) {
    ASSERT_TRUE(parse_data_format(data_format_name(g), &f));
    EXPECT_EQ(f, g);
  }
  EXPECT_FALSE(parse_data_format("parquet", &f));
}

// An MNIST-style directory of gzipped IDX files, as small as the tests need.
class MnistDirectory : public DataFiles {
 protected:
  void SetUp() override {
    DataFiles::SetUp();
    train_pixels_ = random_bytes(kTrain * 4 * 3, 7);
    for (int i = 0; i < kTrain; ++i) train_labels_.push_back(static_cast<uint8_t>(i % 10));
    write_gz("train-images-idx3-ubyte.gz", idx_bytes(0x08, {kTrain, 4, 3}, train_pixels_));
    write_gz("train-labels-idx1-ubyte.gz", idx_bytes(0x08, {kTrain}, train_labels_));
    write("t10k-images-idx3-ubyte", idx_bytes(0x08, {kTest, 4, 3}, random_bytes(kTest * 12, 8)));
    write("t10k-labels-idx1-ubyte", idx_bytes(0x08, {kTest}, random_bytes(kTest, 9)));
  }
  DataOptions options() const {
    DataOptions o;
    o.directory = dir_.string();
    return o;
  }
  static constexpr int kTrain = 101, kTest = 13;
  Bytes train_pixels_, train_labels_;
};

TEST_F(MnistDirectory, LoadsTrainAndTest) {
  const DataSplits s = load_splits(options());
  EXPECT_EQ(s.train.rows, kTrain);
  EXPECT_EQ(s.test.rows, kTest);
  EXPECT_EQ(s.validation.rows, 0);
  EXPECT_EQ(s.train.dim, 12);
  EXPECT_EQ(s.train.image_height, 4);
  EXPECT_EQ(s.train.u8, train_pixels_);
  EXPECT_EQ(s.test.labels.size(), static_cast<size_t>(kTest));
  for (const Dataset* d : {&s.train, &s.validation, &s.test}) {
    EXPECT_EQ(d->scale, 1.0f / 255.0f);
    EXPECT_EQ(d->offset, 0.0f);
  }
}

// The held-out rows: round(0.2 * 101) = 20, disjoint from the train rows, together all of them,
// file order kept, labels following their rows, the same for the same seed, not for another.
TEST_F(MnistDirectory, ValidationSplitIsDeterministicAndDisjoint) {
  DataOptions o = options();
  o.validation_fraction = 0.2;
  o.seed = 5;
  const DataSplits a = load_splits(o);
  ASSERT_EQ(a.validation.rows, 20);
  ASSERT_EQ(a.train.rows, kTrain - 20);
  EXPECT_EQ(a.validation.scale, 1.0f / 255.0f);
  // Each row of the original appears exactly once across the two parts, in order. Rows are
  // identified by content (random 12-byte rows are distinct with overwhelming probability).
  auto row_of = [](const Dataset& d, int r) {
    return Bytes(d.u8.begin() + r * d.dim, d.u8.begin() + (r + 1) * d.dim);
  };
  std::vector<int> origin_train, origin_validation;
  for (int r = 0; r < kTrain; ++r) {
    const Bytes original(train_pixels_.begin() + r * 12, train_pixels_.begin() + (r + 1) * 12);
    int found = 0;
    for (int t = 0; t < a.train.rows; ++t)
      if (row_of(a.train, t) == original) {
        origin_train.push_back(r);
        EXPECT_EQ(a.train.labels[t], train_labels_[r]);
        ++found;
      }
    for (int v = 0; v < a.validation.rows; ++v)
      if (row_of(a.validation, v) == original) {
        origin_validation.push_back(r);
        EXPECT_EQ(a.validation.labels[v], train_labels_[r]);
        ++found;
      }
    EXPECT_EQ(found, 1) << "original row " << r;
  }
  EXPECT_TRUE(std::is_sorted(origin_train.begin(), origin_train.end()));
  EXPECT_TRUE(std::is_sorted(origin_validation.begin(), origin_validation.end()));

  EXPECT_EQ(load_splits(o).validation.u8, a.validation.u8);
  o.seed = 6;
  EXPECT_NE(load_splits(o).validation.u8, a.validation.u8);
}

TEST_F(MnistDirectory, BadOptionsAndMissingFiles) {
  DataOptions o = options();
  for (double bad : {-0.1, 1.0, std::nan("")}) {
    o.validation_fraction = bad;
    expect_error<std::invalid_argument>([&] { load_splits(o); }, {"validation fraction"});
  }
  o.validation_fraction = 0.999;
  expect_error<std::invalid_argument>([&] { load_splits(o); }, {"leaves no training rows"});
  fs::remove(path("train-images-idx3-ubyte.gz"));
  expect_error([&] { load_splits(options()); }, {dir_.string(), "no train-images-idx3-ubyte"});
  DataOptions missing;
  missing.directory = path("nowhere");
  expect_error([&] { load_splits(missing); }, {path("nowhere"), "not a directory"});
  DataOptions orphan;
  orphan.test_path = path("t10k-images-idx3-ubyte");
  expect_error<std::invalid_argument>([&] { load_splits(orphan); }, {"without a train path"});
  DataOptions both = options();
  both.train_path = path("t10k-images-idx3-ubyte");
  expect_error<std::invalid_argument>([&] { load_splits(both); }, {"not both"});
  DataOptions npy_directory = options();
  npy_directory.format = DataFormat::kNpy;
  expect_error<std::invalid_argument>([&] { load_splits(npy_directory); }, {"not npy"});
}

TEST_F(DataFiles, ExplicitPathsAndMismatchedDims) {
  DataOptions o;
  o.train_path = write("train.npy", npy_of("<f4", {2, 3}, std::vector<float>(6, 1.0f)));
  o.test_path = write("test.npy", npy_of("<f4", {2, 2}, std::vector<float>(4, 1.0f)));
  expect_error([&] { load_splits(o); }, {o.test_path, "rows of 2 values", o.train_path, "3"});
  o.test_path = write("test3.npy", npy_of("<f4", {4, 3}, std::vector<float>(12, 1.0f)));
  const DataSplits s = load_splits(o);
  EXPECT_EQ(s.train.rows, 2);
  EXPECT_EQ(s.test.rows, 4);
  o.label_column = "0";
  expect_error<std::invalid_argument>([&] { load_splits(o); }, {"CSV files only"});
}

// Float data: min-max of the train split, applied to the test split (clipped outside the range).
TEST_F(DataFiles, FloatNormalisationUsesTheTrainRange) {
  DataOptions o;
  o.train_path = write_text("train.csv", "-2,0\n6,1\n2,3\n");
  o.test_path = write_text("test.csv", "-4,2\n10,6\n");
  const DataSplits s = load_splits(o);
  // Exact in float: scale = 1/8, offset = 2/8.
  EXPECT_EQ(s.train.scale, 0.125f);
  EXPECT_EQ(s.train.offset, 0.25f);
  EXPECT_EQ(s.test.scale, 0.125f);
  EXPECT_EQ(s.test.offset, 0.25f);
  EXPECT_EQ(s.train.normalised(0, 0), 0.0f);
  EXPECT_EQ(s.train.normalised(1, 0), 1.0f);
  EXPECT_EQ(s.train.normalised(2, 1), 0.625f);
  EXPECT_EQ(s.test.normalised(0, 0), 0.0f);  // -4 is below the train minimum: clipped
  EXPECT_EQ(s.test.normalised(1, 0), 1.0f);  // 10 is above the train maximum: clipped
  EXPECT_EQ(s.test.normalised(0, 1), 0.5f);
}

// Min-max over an awkward range still maps the train extremes to 0 and 1: scale and offset each
// carry one float rounding (2^-24 relative, weighted by (|max| + |min|) / range = 1 here) and the
// fma one more, so within 2^-23 before the clip. All-equal data divides by nothing.
TEST_F(DataFiles, FloatNormalisationEdgeCases) {
  DataOptions o;
  // The maximum comes last, where an off-by-one range would miss it.
  o.train_path = write_text("awkward.csv", "0.1,1e-3\n-0.7,0.3\n");
  const DataSplits s = load_splits(o);
  const double two_roundings = std::ldexp(1.0, -23);
  EXPECT_NEAR(s.train.normalised(1, 0), 0.0f, two_roundings);
  EXPECT_NEAR(s.train.normalised(1, 1), 1.0f, two_roundings);
  EXPECT_NEAR(s.train.normalised(0, 1), (1e-3 + 0.7) / 1.0, 1e-6);
  o.train_path = write_text("constant.csv", "3.5,3.5\n3.5,3.5\n");
  o.test_path = write_text("constant_test.csv", "3.5,4\n");
  const DataSplits c = load_splits(o);
  EXPECT_TRUE(std::isfinite(c.train.scale));
  EXPECT_TRUE(std::isfinite(c.train.offset));
  EXPECT_EQ(c.train.normalised(1, 1), 0.0f);
  EXPECT_EQ(c.test.normalised(0, 1), 0.5f);
}

// ----------------------------------------------------------------------------------------------
// The real Fashion-MNIST (Debian package dataset-fashion-mnist)

TEST(FashionMnist, DefaultDatasetLoadsWhenInstalled) {
  if (!fs::exists(kFashionMnistDir)) {
    // Without the package the default must say how to get it.
    expect_error([] { load_splits(DataOptions{}); },
                 {"Fashion-MNIST not found at /usr/share/datasets/fashion-mnist",
                  "dataset-fashion-mnist", "scripts/setup.sh"});
    GTEST_SKIP() << "Fashion-MNIST is not installed at " << kFashionMnistDir
                 << " (Debian package dataset-fashion-mnist; bash scripts/setup.sh)";
  }
  const auto start = std::chrono::steady_clock::now();
  const DataSplits s = load_splits(DataOptions{});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ timing ] Fashion-MNIST (gz) train + test loaded in %.3f s\n", seconds);
  RecordProperty("load_seconds", std::to_string(seconds));
  EXPECT_EQ(s.train.rows, 60000);
  EXPECT_EQ(s.test.rows, 10000);
  EXPECT_EQ(s.validation.rows, 0);
  for (const Dataset* d : {&s.train, &s.test}) {
    EXPECT_EQ(d->dim, 784);
    EXPECT_EQ(d->image_height, 28);
    EXPECT_EQ(d->image_width, 28);
    EXPECT_TRUE(d->is_u8());
    ASSERT_EQ(d->labels.size(), static_cast<size_t>(d->rows));
    const std::set<int32_t> classes(d->labels.begin(), d->labels.end());
    EXPECT_EQ(classes, (std::set<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    // Balanced classes: 6000 / 1000 of each.
    EXPECT_EQ(std::count(d->labels.begin(), d->labels.end(), 3), d->rows / 10);
    // Real pictures use the whole byte range.
    EXPECT_EQ(*std::max_element(d->u8.begin(), d->u8.end()), 255);
    EXPECT_EQ(*std::min_element(d->u8.begin(), d->u8.end()), 0);
  }
  DataOptions with_validation;
  with_validation.validation_fraction = 0.1;
  with_validation.seed = 1;
  const DataSplits v = load_splits(with_validation);
  EXPECT_EQ(v.train.rows, 54000);
  EXPECT_EQ(v.validation.rows, 6000);
  EXPECT_EQ(v.validation.dim, 784);
}

}  // namespace
}  // namespace fusedvae
