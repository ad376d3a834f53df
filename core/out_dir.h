// Output folders of long runs (train, clip-train, pretrain): created, checked against the inputs,
// and locked for the life of the process, so two runs into one --out cannot interleave their
// files (issue 20).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace peft {

// Creates `dir` (and its parents), then:
//  - refuses (IOError naming `flag`) an `inputs` entry {flag, path} whose path exists and is
//    `dir` itself or lies inside it (paths that do not exist on disk, such as
//    "procedural:shapes", are skipped);
//  - takes an exclusive lock on dir/.peft.lock (flock, held until the process exits, released by
//    the kernel even after kill -9); when another process holds it: IOError "<flag> DIR: another
//    peft run (pid N) is writing into this folder";
//  - removes temp files "*.tmp.<pid>" that processes no longer alive left there.
// Calling it again for the same folder in the same process is a no-op.
void claim_out_dir(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& inputs = {},
                   const std::string& flag = "--out");

// A fresh run into `dir` (claimed first): the files of an earlier run there (names matching
// `run_files`, each a name or a pattern with one '*') would mix with the new run's (a failed
// fresh run left old and new files side by side, issue 20). Without `overwrite`: ValueError
// naming the folder and the first files found (in the order of `run_files`); its hint names
// --resume when the command has one (`resumable`). With it: they are removed before the run writes.
void clear_previous_run(const std::string& dir, const std::vector<std::string>& run_files, bool overwrite,
                        const std::string& flag = "--out", bool resumable = true);

}  // namespace peft
