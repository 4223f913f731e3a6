fn main() -> std::process::ExitCode {
    lgss::cli::main()
}
