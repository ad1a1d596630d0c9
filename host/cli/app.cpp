// @brief CLI11 definitions of the subcommands and the resolution of a run's configuration.
#include "host/cli/app.h"

#include <algorithm>
#include <stdexcept>

#include <CLI/CLI.hpp>

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

}  // namespace

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine result;
  CLI::App app{"fusedvae: fast, trustworthy variational autoencoders on NVIDIA GPUs", "fusedvae"};
  app.require_subcommand(1);
  app.get_formatter()->column_width(34);

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
  CLI::App* eval = app.add_subcommand("eval", "evaluate a trained run: recon, KL, ELBO, IWAE");
  eval->add_option("--run-dir", result.eval.run_dir, "the run to evaluate")->required();
  eval->add_option("--split", result.eval.split, "test | train | validation")
      ->check(CLI::IsMember({"test", "train", "validation"}))
      ->capture_default_str();
  add_file_options(eval, &result.eval.file);
  eval->add_option("--iwae-samples", result.eval.iwae_samples,
                   "importance samples K of the IWAE bound (0 skips it)")
      ->check(CLI::NonNegativeNumber)
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
      ->check(CLI::PositiveNumber)
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
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  reconstruct->add_option("--device", result.reconstruct.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    const CLI::App* asked = &app;
    for (CLI::App* sub : {train, eval, sample, reconstruct})
      if (sub->parsed()) asked = sub;
    result.help = asked == &app ? app.help() : asked->help("fusedvae");
    return result;
  } catch (const CLI::CallForAllHelp&) {
    result.help = app.help("", CLI::AppFormatMode::All);
    return result;
  } catch (const CLI::ParseError& e) {
    throw std::invalid_argument(std::string(e.what()) + " (see fusedvae --help)");
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
      flags.apply(&request.config);
    }
    validate(request.config);
  } else if (eval->parsed()) {
    result.command = "eval";
    check_file_options(*eval, result.eval.file);
  } else if (sample->parsed()) {
    result.command = "sample";
  } else {
    result.command = "reconstruct";
    check_file_options(*reconstruct, result.reconstruct.file);
  }
  return result;
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
  } else if (line.command == "eval") {
    evaluate_run(line.eval, loader, out);
  } else if (line.command == "sample") {
    sample_run(line.sample, out);
  } else {
    reconstruct_run(line.reconstruct, loader, out);
  }
  return 0;
}

}  // namespace fusedvae::cli
