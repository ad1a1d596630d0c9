// @brief CLI11 definitions of the subcommands and the resolution of a run's configuration.
#include "host/cli/app.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include <CLI/CLI.hpp>

#include "host/io/printable.h"

namespace fusedvae::cli {
namespace {

// Settings that may change when a run is resumed: they do not alter the trajectory of the steps
// already taken (more epochs extend it; the device and logging only change where and how often).
const std::vector<std::string> kResumeMayChange = {"epochs", "device", "log-every"};

std::string value_text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

}  // namespace

RunConfig resume_config(const std::string& run_dir, const std::vector<std::string>& given,
                        const std::function<void(const std::string&, RunConfig*)>& apply) {
  const RunConfig saved = read_run_config(run_dir);
  RunConfig resumed = saved;
  for (const std::string& name : given) {
    RunConfig changed = saved;
    apply(name, &changed);
    const nlohmann::json before = find_field(name)->get(saved);
    const nlohmann::json after = find_field(name)->get(changed);
    if (std::find(kResumeMayChange.begin(), kResumeMayChange.end(), name) !=
        kResumeMayChange.end()) {
      apply(name, &resumed);
    } else if (before != after) {
      throw std::invalid_argument(
          "--resume " + run_dir + " continues the run's configuration, where " + name + " is " +
          value_text(before) + ", not " + value_text(after) + "; start a new run to change it");
    }
  }
  return resumed;
}

namespace {

// CLI11's help, without the "{false}" it prints after a negated flag (--no-cuda-graph{false}): the
// help text of every boolean flag says its default in words.
class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* option, bool positional) const override {
    std::string name = CLI::Formatter::make_option_name(option, positional);
    for (size_t open = name.find('{'); open != std::string::npos; open = name.find('{')) {
      const size_t close = name.find('}', open);
      if (close == std::string::npos) break;
      name.erase(open, close - open + 1);
    }
    return name;
  }
};

// An integer option's range, checked with a message in words ("--count must be an integer >= 1,
// got 0") instead of CLI11's "Value 0 not in range 0.000000 to 1.79e308".
CLI::Validator integer_at_least(long long minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || errno != 0 || value < minimum)
          return "must be an integer >= " + std::to_string(minimum) + ", got '" + text + "'";
        return "";
      },
      "INT >= " + std::to_string(minimum));
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The closest of `names` to `typed` when it is close enough to be a slip (a third of its length,
// at least 2 edits), or "".
std::string closest(const std::string& typed, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, typed.size() / 3) + 1;
  for (const std::string& name : names) {
    const size_t d = edit_distance(typed, name);
    if (d < best_distance) best = name, best_distance = d;
  }
  return best;
}

// A parse error in words a new user can act on: the command's own --help, and "did you mean" for a
// mistyped subcommand or flag.
std::string explain_parse_error(const CLI::App& app, const std::vector<std::string>& args,
                                const CLI::ParseError& error) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    commands.push_back(sub->get_name());
  if (args.empty())
    return "give a command: train, eval, sample, reconstruct, dyad or dyad-score (see fusedvae "
           "--help)";
  const std::string& first = args[0];
  if (std::find(commands.begin(), commands.end(), first) == commands.end()) {
    if (!first.empty() && first[0] == '-' && first != "-h" && first != "--help")
      return "the command comes first: fusedvae train|eval|sample|reconstruct|dyad|dyad-score "
             "[flags] (see fusedvae --help)";
    const std::string guess = closest(first, commands);
    return "unknown command '" + first + "'" +
           (guess.empty() ? "" : "; did you mean '" + guess + "'?") +
           " (commands: train, eval, sample, reconstruct, dyad, dyad-score; see fusedvae --help)";
  }
  const CLI::App* command = app.get_subcommand(first);
  std::vector<std::string> flags;
  for (const CLI::Option* option : command->get_options())
    for (const std::string& name : option->get_lnames()) flags.push_back("--" + name);
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string typed = args[i].substr(0, args[i].find('='));
    if (typed.size() < 3 || typed.compare(0, 2, "--") != 0) continue;
    if (std::find(flags.begin(), flags.end(), typed) != flags.end()) continue;
    if (first == "train" && typed == "--model")
      return "fusedvae train trains the image VAE (an MLP); DyAD's GRU sequence VAE trains with "
             "its own command: fusedvae dyad (see fusedvae dyad --help)";
    const std::string guess = closest(typed, flags);
    return "unknown flag " + typed + " for " + first +
           (guess.empty() ? "" : "; did you mean " + guess + "?") + " (see fusedvae " + first +
           " --help)";
  }
  return std::string(error.what()) + " (see fusedvae " + first + " --help)";
}

// --file and its companions, shared by eval and reconstruct.
void add_file_options(CLI::App* command, DataFile* file) {
  command
      ->add_option(
          "--file", file->path,
          "score this file (IDX, NPY or CSV) instead of a split; it is normalised with the "
          "run's train-split map, values outside the train range clipped to [0, 1]")
      ->type_name("PATH");
  command->add_option("--labels", file->labels, "labels of --file (IDX or NPY)")->type_name("PATH");
  command->add_option("--format", file->format, "format of --file: auto | idx | npy | csv")
      ->check(CLI::IsMember({"auto", "idx", "npy", "csv"}))
      ->capture_default_str();
  command->add_option("--label-column", file->label_column,
                      "CSV --file: the label column (0-based index or header name), not scored");
}

// --split names the run's own data, --file other data: one or the other. The companions of --file
// mean nothing without it.
void check_file_options(const CLI::App& command, const DataFile& file) {
  const bool given_split = command.count("--split") > 0;
  if (!file.path.empty() && given_split)
    throw std::invalid_argument("--file and --split exclude each other: score a file or a split");
  if (file.path.empty())
    for (const char* companion : {"--labels", "--format", "--label-column"})
      if (command.count(companion) > 0)
        throw std::invalid_argument(std::string(companion) + " applies to --file, which is absent");
}

// sample and reconstruct write PNG only: a name that promises another format is refused up front.
void check_png_name(const std::string& path) {
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.size() < 4 || lower.compare(lower.size() - 4, 4, ".png") != 0)
    throw std::invalid_argument("--out " + path +
                                ": the picture is written as PNG; give a name ending in .png");
}

}  // namespace

namespace {

CommandLine parse_unescaped(const std::vector<std::string>& args) {
  CommandLine result;
  CLI::App app{"fusedvae: fast, trustworthy variational autoencoders on NVIDIA GPUs", "fusedvae"};
  app.require_subcommand(1);
  app.formatter(std::make_shared<HelpFormatter>());
  app.get_formatter()->column_width(34);
  app.footer("Each command lists its flags and their defaults: fusedvae <command> --help");

  // ---- train
  CLI::App* train = app.add_subcommand("train", "train a VAE; writes a run directory");
  FlagSet flags;
  const RunConfig defaults;
  std::string config_file;
  train
      ->add_option("--config", config_file,
                   "JSON file of settings (keys: the long flag names); flags given override it")
      ->check(CLI::ExistingFile);
  train->add_option("--run-dir", result.train.run_dir,
                    "where the run's files go (default: runs/<UTC date-time>)");
  std::string resume_dir;
  train
      ->add_option("--resume", resume_dir,
                   "continue the run in RUN_DIR from its last checkpoint (same configuration)")
      ->type_name("RUN_DIR");
  train->add_flag("--overwrite", result.train.overwrite,
                  "start afresh in a --run-dir that already holds a run, replacing it");
  flags.add_to(*train, defaults);

  // ---- eval
  CLI::App* eval = app.add_subcommand(
      "eval", "evaluate a trained run: recon, KL, ELBO, IWAE (a dyad run: AUROC per fold)");
  eval->add_option("--run-dir", result.eval.run_dir, "the run to evaluate")->required();
  eval->add_option("--split", result.eval.split, "test | train | validation")
      ->check(CLI::IsMember({"test", "train", "validation"}))
      ->capture_default_str();
  add_file_options(eval, &result.eval.file);
  eval->add_option("--iwae-samples", result.eval.iwae_samples,
                   "importance samples K of the IWAE bound (0 skips it)")
      ->check(integer_at_least(0))
      ->capture_default_str();
  eval->add_option(
      "--per-sample", result.eval.per_sample_csv,
      "write index,recon,kl,elbo[,iwae] per sample (index: row of the data) to this CSV");
  eval->add_option("--seed", result.eval.seed, "seed of the Monte-Carlo draws")
      ->capture_default_str();
  eval->add_option("--device", result.eval.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();

  // ---- sample
  CLI::App* sample = app.add_subcommand("sample", "decode samples from the prior into a PNG grid");
  sample->add_option("--run-dir", result.sample.run_dir, "the trained run")->required();
  sample->add_option("--out", result.sample.out_png, "PNG file to write")->required();
  sample->add_option("--count", result.sample.count, "number of samples")
      ->check(integer_at_least(1))
      ->capture_default_str();
  sample->add_option("--seed", result.sample.seed, "seed of z ~ N(0, I)")->capture_default_str();
  sample->add_option("--device", result.sample.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();

  // ---- reconstruct
  CLI::App* reconstruct =
      app.add_subcommand("reconstruct", "PNG grid of data images above their reconstructions");
  reconstruct->add_option("--run-dir", result.reconstruct.run_dir, "the trained run")->required();
  reconstruct->add_option("--out", result.reconstruct.out_png, "PNG file to write")->required();
  reconstruct->add_option("--split", result.reconstruct.split, "test | train | validation")
      ->check(CLI::IsMember({"test", "train", "validation"}))
      ->capture_default_str();
  add_file_options(reconstruct, &result.reconstruct.file);
  reconstruct->add_option("--count", result.reconstruct.count, "number of images")
      ->check(integer_at_least(1))
      ->capture_default_str();
  reconstruct->add_option("--device", result.reconstruct.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();

  const DyadCommands dyad = add_dyad_commands(app, &result.dyad, &result.dyad_score);

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    const CLI::App* asked = &app;
    for (CLI::App* sub : {train, eval, sample, reconstruct, dyad.dyad, dyad.score})
      if (sub->parsed()) asked = sub;
    result.help = asked == &app ? app.help() : asked->help("fusedvae");
    return result;
  } catch (const CLI::CallForAllHelp&) {
    result.help = app.help("", CLI::AppFormatMode::All);
    return result;
  } catch (const CLI::ParseError& e) {
    throw std::invalid_argument(io::printable(explain_parse_error(app, args, e), 400));
  }

  if (train->parsed()) {
    result.command = "train";
    TrainRequest& request = result.train;
    if (!resume_dir.empty()) {
      if (!config_file.empty())
        throw std::invalid_argument("--resume uses the run's own config.json; drop --config");
      if (!request.run_dir.empty() && request.run_dir != resume_dir)
        throw std::invalid_argument("--resume " + resume_dir + " and --run-dir " + request.run_dir +
                                    " name different runs");
      if (request.overwrite)
        throw std::invalid_argument("--resume and --overwrite exclude each other");
      request.resume = true;
      request.run_dir = resume_dir;
      request.config =
          resume_config(resume_dir, flags.given(), [&](const std::string& name, RunConfig* config) {
            FlagSet::apply_one(flags, name, config);
          });
    } else {
      request.config = config_file.empty() ? defaults : read_config_file(config_file, defaults);
      if (!config_file.empty() && request.run_dir.empty())
        request.run_dir = read_config_run_dir(config_file);
      flags.apply(&request.config);
    }
    validate(request.config);
  } else if (eval->parsed()) {
    result.command = "eval";
    check_file_options(*eval, result.eval.file);
  } else if (dyad.dyad->parsed()) {
    result.command = "dyad";
    resolve_dyad_config(dyad, &result.dyad);
  } else if (dyad.score->parsed()) {
    result.command = "dyad-score";
  } else if (sample->parsed()) {
    result.command = "sample";
    check_png_name(result.sample.out_png);
  } else {
    result.command = "reconstruct";
    check_file_options(*reconstruct, result.reconstruct.file);
    check_png_name(result.reconstruct.out_png);
  }
  return result;
}

}  // namespace

// Every message quotes what the user typed (paths, values) escaped, so it stays on one line.
CommandLine parse_command_line(const std::vector<std::string>& args) {
  try {
    return parse_unescaped(args);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(io::printable(e.what(), 2000));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(io::printable(e.what(), 2000));
  }
}

int run_cli(const std::vector<std::string>& args, std::ostream& out, bool terminal,
            const DataLoader& loader) {
  CommandLine line = parse_command_line(args);
  if (line.command.empty()) {
    out << line.help;
    return 0;
  }
  if (line.command == "train") {
    line.train.terminal = terminal;
    train(line.train, loader, out);
  } else if (line.command == "eval" && is_dyad_run(line.eval.run_dir)) {
    evaluate_dyad_run(line.eval.run_dir, line.eval.device, out);
  } else if (line.command == "eval") {
    evaluate_run(line.eval, loader, out);
  } else if (line.command == "sample") {
    sample_run(line.sample, out);
  } else if (line.command == "dyad") {
    run_dyad(line.dyad, out);
  } else if (line.command == "dyad-score") {
    run_dyad_score(line.dyad_score, out);
  } else {
    reconstruct_run(line.reconstruct, loader, out);
  }
  return 0;
}

}  // namespace fusedvae::cli
